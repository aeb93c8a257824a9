// Runs every client example under examples/clients/ as a user would (a child
// process, configured by KEYWARD_URL / KEYWARD_ADDR / KEYWARD_ADMIN_TOKEN)
// against a keyward on port 0, and checks what it printed against the server's
// own view: the key it issued exists with the example's name and usage counted
// for each valid verification it made; the key itself is printed only with --show-key; a
// wrong admin token makes the example fail with the RPC status.
//
// Toolchains: Node always; Python grpcio, curl + jq and Go (GOPATH mode, Debian's
// grpc-go) when installed. A missing toolchain skips its examples with a warning,
// except under CI, where it fails the file.
import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { copyFile, mkdir, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KeyService } from "../../src/gen/keyward/v1/keys_pb.js";
import { ADMIN_TOKEN } from "../helpers/core.js";
import { assertBuilt } from "../helpers/process.js";
import { PYTHON, PYTHON_EXAMPLE_DIR, preparePythonGrpc, type PythonGrpc } from "../helpers/python.js";
import { adminHeaders, startKeyward, type RunningKeyward } from "../helpers/server.js";

const EXAMPLES = fileURLToPath(new URL("../../examples/clients", import.meta.url));
const KEY = /\bkw_[0-9A-Za-z]{38}\b/;
const GOPATH_SYSTEM = "/usr/share/gocode";
const GO_APT_PACKAGES =
  "golang-go golang-google-grpc-dev golang-github-golang-protobuf-1-5-dev golang-google-protobuf-dev protobuf-compiler protoc-gen-go protoc-gen-go-grpc";
const CURL_APT_PACKAGES = "curl jq";

const execFileP = promisify(execFile);

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion; a non-zero exit is a result, not an exception. */
function runCommand(file: string, args: string[], env: Record<string, string>, cwd?: string): Promise<Run> {
  return new Promise((resolve) => {
    execFile(file, args, { env, cwd, timeout: 30_000 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === "number" ? error.code : null) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

async function succeeds(file: string, args: string[]): Promise<boolean> {
  return (await runCommand(file, args, { PATH: process.env.PATH ?? "" })).code === 0;
}

/** Outside CI: warns and returns false. Under CI: a missing toolchain is an error. */
function unavailable(what: string, reason: string, apt: string): false {
  const message = `${what} client example unavailable: ${reason} (apt-get install -y ${apt})`;
  if (process.env.CI) throw new Error(`${message}; the example must be tested in CI`);
  console.warn(`WARNING: ${message}; skipping`);
  return false;
}

// --- toolchains ------------------------------------------------------------

let python: PythonGrpc | undefined;
try {
  python = await preparePythonGrpc();
} catch (error) {
  if (process.env.CI) throw error;
  console.warn(`WARNING: generating Python stubs failed (${(error as Error).message}); skipping`);
}

async function curlAvailable(): Promise<boolean> {
  for (const tool of ["bash", "curl", "jq"]) {
    if (!(await succeeds(tool, ["--version"]))) return unavailable("curl", `${tool} not found`, CURL_APT_PACKAGES);
  }
  return true;
}
const hasCurl = await curlAvailable();

async function goAvailable(): Promise<boolean> {
  if (!(await succeeds("go", ["version"]))) return unavailable("Go", "go not found", GO_APT_PACKAGES);
  for (const tool of ["protoc", "protoc-gen-go", "protoc-gen-go-grpc"]) {
    if (!(await succeeds(tool, ["--version"]))) return unavailable("Go", `${tool} not found`, GO_APT_PACKAGES);
  }
  for (const pkg of ["google.golang.org/grpc", "google.golang.org/protobuf/proto"]) {
    if (!existsSync(join(GOPATH_SYSTEM, "src", pkg))) return unavailable("Go", `${GOPATH_SYSTEM}/src/${pkg} not found`, GO_APT_PACKAGES);
  }
  return true;
}
const hasGo = await goAvailable();

// --- the server and what every example must show ---------------------------

let kw: RunningKeyward;
let keys: Client<typeof KeyService>;

beforeAll(async () => {
  kw = await startKeyward();
  keys = createClient(KeyService, createGrpcTransport({ baseUrl: kw.baseUrl }));
});
afterAll(async () => {
  await kw?.stop();
  await python?.dispose();
});

/** The environment a user would set, and nothing else from the test process. */
function exampleEnv(extra: Record<string, string> = {}, adminToken = ADMIN_TOKEN): Record<string, string> {
  return {
    PATH: process.env.PATH ?? "",
    KEYWARD_URL: kw.baseUrl,
    KEYWARD_ADDR: `127.0.0.1:${kw.port}`,
    KEYWARD_ADMIN_TOKEN: adminToken,
    ...extra,
  };
}

interface Example {
  /** What the example passes as IssueRequest.name. */
  keyName: string;
  /** Valid verifications the example makes with the key it issues (each one counts as usage). */
  validUses?: number;
  run(args: string[], env: Record<string, string>): Promise<Run>;
}

/** The shared contract: issue, verify valid and insufficient scope, key only on request, errors reported. */
function exampleContract(example: Example, extra?: (out: string, issuedId: string) => void | Promise<void>) {
  it("issues a key and verifies it (valid, then insufficient scope) without printing the key", async () => {
    const result = await example.run([], exampleEnv());
    expect(result, result.stderr).toMatchObject({ code: 0 });
    const issued = /^issued (key_\w+) \(prefix kw_\w{4}\) for tenant acme$/m.exec(result.stdout);
    expect(issued, result.stdout).not.toBeNull();
    expect(result.stdout).toContain("verify invoices:read: valid=true code=VERIFY_CODE_VALID\n");
    expect(result.stdout).toContain("verify invoices:write: valid=false code=VERIFY_CODE_INSUFFICIENT_SCOPE\n");
    expect(result.stdout + result.stderr).not.toMatch(KEY);

    // The server's view: the key exists as the example described it, and its valid uses were counted.
    const { apiKey } = await keys.getKey({ id: issued![1]! }, { headers: adminHeaders });
    expect(apiKey).toMatchObject({
      tenantId: "acme",
      name: example.keyName,
      scopes: ["invoices:read"],
      rateLimit: 1000,
      requestCount: BigInt(example.validUses ?? 1),
    });
    await extra?.(result.stdout, issued![1]!);
  });

  it("prints the issued key with --show-key, and it verifies", async () => {
    const result = await example.run(["--show-key"], exampleEnv());
    expect(result, result.stderr).toMatchObject({ code: 0 });
    const key = /^key: (\S+)$/m.exec(result.stdout)?.[1];
    expect(key).toMatch(KEY);
    const id = /^issued (key_\w+)/m.exec(result.stdout)?.[1];
    const verified = await keys.verify({ key: key!, requiredScopes: ["invoices:read"] });
    expect(verified).toMatchObject({ valid: true, apiKey: { id } });
  });

  it("fails with the RPC status, printing nothing issued, when the admin token is wrong", async () => {
    const result = await example.run([], exampleEnv({}, "not-the-admin-token-0123456789"));
    expect(result.code, result.stdout).toBe(1);
    expect(result.stdout).not.toContain("issued");
    expect(result.stderr).toMatch(/^error: .*unauthenticated.*invalid credential/im);
  });
}

// --- Node ------------------------------------------------------------------

describe("Node: Connect (examples/clients/node/connect.mjs)", () => {
  beforeAll(() => assertBuilt()); // it imports the compiled descriptors from dist/gen
  exampleContract({
    keyName: "node connect example",
    run: (args, env) => runCommand(process.execPath, [join(EXAMPLES, "node/connect.mjs"), ...args], env),
  });
});

describe("Node: grpc-js + proto-loader (examples/clients/node/grpc-js.mjs)", () => {
  exampleContract({
    keyName: "node grpc-js example",
    run: (args, env) => runCommand(process.execPath, [join(EXAMPLES, "node/grpc-js.mjs"), ...args], env),
  });
});

// --- Python ----------------------------------------------------------------

describe.runIf(python)("Python: grpcio (examples/clients/python/client.py)", () => {
  exampleContract(
    {
      keyName: "python example",
      validUses: 2, // Verify, then the allowed ext_authz Check
      run: (args, env) => runCommand(PYTHON, [join(PYTHON_EXAMPLE_DIR, "client.py"), ...args], { ...env, ...python!.env }),
    },
    (out, id) => {
      // ext_authz Check: allowed with the key (identity headers for upstream), 401 without one.
      expect(out).toContain(`check with key: allowed key_id=${id} tenant=acme\n`);
      expect(out).toContain("check without key: denied http=401 grpc=UNAUTHENTICATED error=missing_key\n");
    },
  );
});

// --- curl ------------------------------------------------------------------

describe.runIf(hasCurl)("curl: Connect JSON over HTTP/1.1 (examples/clients/curl/verify.sh)", () => {
  exampleContract(
    {
      keyName: "curl example",
      run: (args, env) => runCommand("bash", [join(EXAMPLES, "curl/verify.sh"), ...args], env),
    },
    async (out, id) => {
      // ListKeys pages newest first, so the key just issued leads.
      expect(out).toMatch(new RegExp(`^listKeys: \\d+ key\\(s\\) in tenant acme, newest ${id}$`, "m"));
      expect(out).toContain("setSetting: max_upload_mb=25 (SETTING_TYPE_INT)\n");
    },
  );
});

// --- Go --------------------------------------------------------------------

describe.runIf(hasGo)("Go: grpc-go, GOPATH mode with Debian's packages (examples/clients/go)", () => {
  let gopath: string;
  let binary: string;

  beforeAll(async () => {
    // GOPATH layout: $tmp/src/keyward.example/client holds the example's sources and the
    // stubs gen.sh writes; grpc-go and protobuf come from Debian's /usr/share/gocode.
    gopath = await mkdtemp(join(tmpdir(), "keyward-go-"));
    const moduleDir = join(gopath, "src", "keyward.example", "client");
    await mkdir(moduleDir, { recursive: true });
    for (const file of await readdir(join(EXAMPLES, "go"))) {
      if (file.endsWith(".go")) await copyFile(join(EXAMPLES, "go", file), join(moduleDir, file));
    }
    await execFileP("bash", [join(EXAMPLES, "go/gen.sh"), moduleDir], { timeout: 30_000 });

    // grpc-go before 1.63 (Debian 12 ships 1.33) has no grpc.NewClient: build conn_legacy.go instead of conn.go.
    const modern = readFileSync(join(GOPATH_SYSTEM, "src/google.golang.org/grpc/clientconn.go"), "utf8").includes("func NewClient(");
    binary = join(gopath, "bin", "client");
    await execFileP("go", ["build", ...(modern ? [] : ["-tags", "grpc_legacy"]), "-o", binary, "keyward.example/client"], {
      timeout: 120_000,
      env: {
        ...process.env,
        GO111MODULE: "off",
        GOPATH: `${gopath}:${GOPATH_SYSTEM}`,
        GOFLAGS: "",
        // Shared between runs so only the first build compiles grpc-go (~15 s).
        GOCACHE: join(tmpdir(), "keyward-go-build-cache"),
      },
    });
  }, 150_000);
  afterAll(async () => {
    if (gopath) await rm(gopath, { recursive: true, force: true });
  });

  exampleContract({
    keyName: "go example",
    run: (args, env) => runCommand(binary, args, env),
  });
});
