// TLS on the one listener: ALPN picks h2 or http/1.1, every client kind works,
// mTLS refuses clients without a certificate from the configured CA, and the
// certificate reloads without a restart (app.reloadTls and SIGHUP).
import { connect as tlsConnect, type PeerCertificate } from "node:tls";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KeyService, VerifyCode } from "../../src/gen/keyward/v1/keys_pb.js";
import { createTestPki, type TestPki } from "../helpers/certs.js";
import { grpcJsClients } from "../helpers/clients.js";
import { ADMIN_TOKEN } from "../helpers/core.js";
import { startMain } from "../helpers/process.js";
import { adminHeaders, startKeyward, type RunningKeyward } from "../helpers/server.js";

function handshake(port: number, pki: TestPki, options: { alpn?: string[]; client?: boolean } = {}) {
  return new Promise<{ alpn: string | false; serial: string; authorized: boolean }>((resolve, reject) => {
    const socket = tlsConnect({
      host: "127.0.0.1",
      port,
      ca: pki.read(pki.caCert),
      ALPNProtocols: options.alpn,
      ...(options.client ? { cert: pki.read(pki.clientCert), key: pki.read(pki.clientKey) } : {}),
    });
    socket.once("secureConnect", () => {
      const cert = socket.getPeerCertificate() as PeerCertificate;
      // With TLS 1.3 a refused client certificate only shows once the server speaks.
      socket.once("data", () => {});
      socket.write("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
      socket.once("data", () => {
        resolve({ alpn: socket.alpnProtocol ?? false, serial: cert.serialNumber.toLowerCase(), authorized: socket.authorized });
        socket.destroy();
      });
      socket.once("error", reject);
      socket.once("close", () => reject(new Error("closed by the server")));
    });
    socket.once("error", reject);
  });
}

describe("TLS", () => {
  let pki: TestPki;
  let kw: RunningKeyward;
  beforeAll(async () => {
    pki = createTestPki();
    kw = await startKeyward({ env: { KEYWARD_TLS_CERT_FILE: pki.serverCert, KEYWARD_TLS_KEY_FILE: pki.serverKey } });
  });
  afterAll(async () => {
    await kw?.stop();
    pki?.remove();
  });

  it("negotiates h2 and http/1.1 by ALPN on the one port", async () => {
    expect((await handshake(kw.port, pki, { alpn: ["h2"] })).alpn).toBe("h2");
    expect((await handshake(kw.port, pki, { alpn: ["http/1.1"] })).alpn).toBe("http/1.1");
    expect((await handshake(kw.port, pki, { alpn: ["h2", "http/1.1"] })).alpn).toBe("h2");
  });

  it("serves grpc-js, Connect over h2 and Connect JSON over HTTP/1.1", async () => {
    const baseUrl = `https://127.0.0.1:${kw.port}`;
    const ca = pki.read(pki.caCert);
    const grpcClients = grpcJsClients(grpc.credentials.createSsl(ca));
    try {
      const keys = grpcClients.client(KeyService, `127.0.0.1:${kw.port}`);
      const issued = await keys.issue({ tenantId: "acme" }, { headers: adminHeaders });
      expect((await keys.verify({ key: issued.key })).code).toBe(VerifyCode.VALID);
      const h2 = createClient(KeyService, createGrpcTransport({ baseUrl, nodeOptions: { ca } }));
      expect((await h2.verify({ key: issued.key })).code).toBe(VerifyCode.VALID);
      const h1 = createClient(KeyService, createConnectTransport({ baseUrl, httpVersion: "1.1", nodeOptions: { ca } }));
      expect((await h1.verify({ key: issued.key })).code).toBe(VerifyCode.VALID);
    } finally {
      grpcClients.close();
    }
  });

  it("reloads the certificate for new connections without a restart", async () => {
    const before = (await handshake(kw.port, pki)).serial;
    const renewed = pki.renewServer();
    expect(renewed).not.toBe(before);
    kw.app.reloadTls();
    expect((await handshake(kw.port, pki)).serial).toBe(renewed);
  });
});

describe("mTLS", () => {
  let pki: TestPki;
  let kw: RunningKeyward;
  beforeAll(async () => {
    pki = createTestPki();
    kw = await startKeyward({
      env: { KEYWARD_TLS_CERT_FILE: pki.serverCert, KEYWARD_TLS_KEY_FILE: pki.serverKey, KEYWARD_TLS_CLIENT_CA_FILE: pki.caCert },
    });
  });
  afterAll(async () => {
    await kw?.stop();
    pki?.remove();
  });

  it("refuses clients without a certificate and serves those with one", async () => {
    await expect(handshake(kw.port, pki, { alpn: ["http/1.1"] })).rejects.toThrow();
    expect((await handshake(kw.port, pki, { alpn: ["http/1.1"], client: true })).alpn).toBe("http/1.1");
    const creds = grpc.credentials.createSsl(pki.read(pki.caCert), pki.read(pki.clientKey), pki.read(pki.clientCert));
    const clients = grpcJsClients(creds);
    try {
      const keys = clients.client(KeyService, `127.0.0.1:${kw.port}`);
      const issued = await keys.issue({ tenantId: "acme" }, { headers: adminHeaders });
      expect((await keys.verify({ key: issued.key })).code).toBe(VerifyCode.VALID);
    } finally {
      clients.close();
    }
  });
});

describe("SIGHUP", () => {
  it("reloads the certificate of a running process", async () => {
    const pki = createTestPki();
    const server = await startMain({
      KEYWARD_DATABASE_URL: "sqlite::memory:",
      KEYWARD_ADMIN_TOKEN: ADMIN_TOKEN,
      KEYWARD_TLS_CERT_FILE: pki.serverCert,
      KEYWARD_TLS_KEY_FILE: pki.serverKey,
    });
    try {
      const port = Number(new URL(server.baseUrl).port);
      const before = (await handshake(port, pki)).serial;
      const renewed = pki.renewServer();
      expect(renewed).not.toBe(before);
      server.child.kill("SIGHUP");
      const deadline = Date.now() + 5000;
      let serial = before;
      while (serial !== renewed && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50));
        serial = (await handshake(port, pki)).serial;
      }
      expect(serial).toBe(renewed);
      expect(server.output()).toContain("TLS certificate reloaded");
    } finally {
      expect(await server.stop()).toBe(0);
      pki.remove();
    }
  });
});
