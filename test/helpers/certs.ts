// Test PKI made with the openssl CLI: a CA, a server certificate for
// 127.0.0.1/localhost and a client certificate, all in a temp directory.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface TestPki {
  dir: string;
  caCert: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  /** Issues a fresh server certificate into serverCert/serverKey (for reload tests); returns its serial. */
  renewServer(): string;
  serial(certFile: string): string;
  read(file: string): Buffer;
  remove(): void;
}

const openssl = (args: string[], cwd: string) => execFileSync("openssl", args, { cwd, stdio: ["ignore", "pipe", "pipe"] }).toString();

export function createTestPki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), "keyward-pki-"));
  const f = (name: string) => join(dir, name);
  openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj", "/CN=keyward test CA", "-keyout", "ca.key", "-out", "ca.crt"], dir);
  writeFileSync(f("server.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n");
  writeFileSync(f("client.ext"), "extendedKeyUsage=clientAuth\n");
  const issue = (name: string, cn: string) => {
    openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", `/CN=${cn}`, "-keyout", `${name}.key`, "-out", `${name}.csr`], dir);
    openssl(["x509", "-req", "-in", `${name}.csr`, "-CA", "ca.crt", "-CAkey", "ca.key", "-set_serial", `0x${Date.now().toString(16)}${Math.floor(Math.random() * 1e6).toString(16)}`, "-days", "2", "-extfile", `${name}.ext`, "-out", `${name}.crt`], dir);
  };
  issue("server", "keyward");
  issue("client", "envoy");
  const serial = (file: string) => openssl(["x509", "-noout", "-serial", "-in", file], dir).trim().replace(/^serial=/, "").toLowerCase();
  return {
    dir,
    caCert: f("ca.crt"),
    serverCert: f("server.crt"),
    serverKey: f("server.key"),
    clientCert: f("client.crt"),
    clientKey: f("client.key"),
    renewServer() {
      issue("server", "keyward");
      return serial(f("server.crt"));
    },
    serial,
    read: (file) => readFileSync(file),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
