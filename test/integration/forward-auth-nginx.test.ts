// examples/nginx/nginx.conf, run by a real nginx (Debian's package) in front of
// a tiny upstream HTTP server, with keyward answering auth_request
// subrequests. Only addresses and log/temp paths are replaced. Without nginx
// the suite is skipped with a warning, except under CI, where it must run.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer, request as httpRequest, type IncomingHttpHeaders, type Server } from "node:http";
import { createServer as createNetServer, connect as netConnect, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Client } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KeyService } from "../../src/gen/keyward/v1/keys_pb.js";
import { connectClients, type ClientFactory } from "../helpers/clients.js";
import { adminHeaders, startKeyward, type RunningKeyward } from "../helpers/server.js";

const EXAMPLE = new URL("../../examples/nginx/nginx.conf", import.meta.url);

function findNginx(): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(":").concat(["/usr/sbin", "/usr/local/sbin", "/sbin"])) {
    const candidate = join(dir, "nginx");
    if (dir && existsSync(candidate)) return candidate;
  }
  return undefined;
}

const nginxBin = findNginx();
if (!nginxBin) {
  const message = "nginx is not installed (apt-get install -y nginx)";
  if (process.env.CI) throw new Error(`${message}; the nginx forward-auth test must run in CI`);
  console.warn(`WARNING: ${message}; skipping the nginx forward-auth test`);
}

async function freePort(): Promise<number> {
  const server = createNetServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

async function waitForPort(port: number, child: ChildProcess, errorLog: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) break;
    const ok = await new Promise<boolean>((resolve) => {
      const socket = netConnect(port, "127.0.0.1", () => {
        socket.destroy();
        resolve(true);
      });
      socket.on("error", () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  const log = await readFile(errorLog, "utf8").catch(() => "");
  throw new Error(`nginx did not start (exit ${child.exitCode}):\n${log}`);
}

interface Seen {
  url: string;
  headers: IncomingHttpHeaders;
}

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

function send(port: number, path: string, headers: Record<string, string> = {}, method = "GET", body?: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: "127.0.0.1", port, path, method, headers, agent: false }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (text += c));
      res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body: text }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

describe.runIf(nginxBin)("nginx auth_request with examples/nginx/nginx.conf", () => {
  let kw: RunningKeyward;
  let admin: ClientFactory;
  let keys: Client<typeof KeyService>;
  let upstream: Server;
  let nginx: ChildProcess;
  let dir: string;
  let port: number;
  const seen: Seen[] = [];

  beforeAll(async () => {
    kw = await startKeyward();
    admin = connectClients("connect-json");
    keys = admin.client(KeyService, kw.baseUrl);

    upstream = createServer((req, res) => {
      seen.push({ url: req.url ?? "", headers: req.headers });
      req.resume();
      req.on("end", () => {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ upstream: true }));
      });
    });
    await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r));
    const upstreamPort = (upstream.address() as AddressInfo).port;

    dir = await mkdtemp(join(tmpdir(), "keyward-nginx-"));
    port = await freePort();
    const example = await readFile(EXAMPLE, "utf8");
    const config = example
      .replace("server 127.0.0.1:50051;", `server 127.0.0.1:${kw.port};`)
      .replace("server 127.0.0.1:8080;", `server 127.0.0.1:${upstreamPort};`)
      .replace("listen 127.0.0.1:8000;", `listen 127.0.0.1:${port};`)
      .replace(
        "http {",
        ["http {", ...["access_log", "client_body_temp_path", "proxy_temp_path", "fastcgi_temp_path", "uwsgi_temp_path", "scgi_temp_path"].map(
          (d) => `    ${d} ${join(dir, d === "access_log" ? "access.log" : d)};`,
        )].join("\n"),
      );
    // Every substitution must have hit: the test runs the example, not a copy.
    expect(config).toContain(`127.0.0.1:${kw.port}`);
    expect(config).toContain(`127.0.0.1:${upstreamPort}`);
    expect(config).toContain(`listen 127.0.0.1:${port}`);
    await writeFile(join(dir, "nginx.conf"), config);
    const errorLog = join(dir, "error.log");
    nginx = spawn(
      nginxBin!,
      ["-p", dir, "-c", join(dir, "nginx.conf"), "-g", `daemon off; master_process off; pid ${join(dir, "nginx.pid")}; error_log ${errorLog} info;`],
      { stdio: "ignore" },
    );
    await waitForPort(port, nginx, errorLog);
  });

  afterAll(async () => {
    if (nginx && nginx.exitCode === null) {
      const exited = new Promise((r) => nginx.once("exit", r));
      nginx.kill("SIGTERM");
      await exited;
    }
    admin?.close();
    await kw?.stop();
    await new Promise<void>((r) => (upstream ? upstream.close(() => r()) : r()));
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const issue = (extra: Record<string, unknown> = {}) =>
    keys.issue({ tenantId: "acme", name: "nginx", scopes: ["orders:read"], ...extra }, { headers: adminHeaders });
  const lastSeen = () => seen[seen.length - 1]!;

  it("lets a valid key through with keyward's identity headers, replacing spoofed ones and stripping the key", async () => {
    const { key, apiKey } = await issue({ scopes: ["orders:read", "orders:write"] });
    const before = seen.length;
    const res = await send(port, "/orders/42?expand=items", {
      "x-api-key": key,
      "x-keyward-key-id": "key_spoofed",
      "x-keyward-tenant-id": "evil",
      "x-keyward-scopes": "admin",
    });
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toEqual({ upstream: true });
    expect(seen.length).toBe(before + 1);
    const { url, headers } = lastSeen();
    expect(url).toBe("/orders/42?expand=items");
    expect(headers["x-keyward-key-id"]).toBe(apiKey!.id);
    expect(headers["x-keyward-tenant-id"]).toBe("acme");
    expect(headers["x-keyward-scopes"]).toBe("orders:read,orders:write");
    expect(headers["x-api-key"]).toBeUndefined();
    expect(JSON.stringify(headers)).not.toContain("key_spoofed");
    expect(JSON.stringify(headers)).not.toContain("evil");
  });

  it("accepts authorization: Bearer and sends POST bodies only upstream", async () => {
    const { key, apiKey } = await issue();
    const res = await send(port, "/orders/", { authorization: `Bearer ${key}`, "content-type": "application/json" }, "POST", '{"item":1}');
    expect(res.status).toBe(200);
    expect(lastSeen().headers["x-keyward-key-id"]).toBe(apiKey!.id);
    expect(lastSeen().headers.authorization).toBeUndefined();
  });

  it("denies missing and unknown keys with 401 + www-authenticate, without reaching the upstream", async () => {
    const before = seen.length;
    const missing = await send(port, "/orders/1", { "x-keyward-key-id": "key_spoofed" });
    expect(missing.status).toBe(401);
    expect(missing.headers["www-authenticate"]).toBe('Bearer realm="keyward"');
    expect(JSON.parse(missing.body)).toMatchObject({ code: "unauthenticated" });
    const unknown = await send(port, "/orders/1", { "x-api-key": "kw_0000000000000000000000000000000000000" });
    expect(unknown.status).toBe(401);
    expect(unknown.headers["www-authenticate"]).toMatch(/error="invalid_token"/);
    expect(seen.length).toBe(before);
  });

  it("enforces the scopes each location asks for with 403", async () => {
    const { key } = await issue({ scopes: ["orders:read"] });
    const before = seen.length;
    const res = await send(port, "/admin/users", { "x-api-key": key });
    expect(res.status).toBe(403);
    expect(res.headers["content-type"]).toBe("application/json");
    expect(res.headers["www-authenticate"]).toBe('Bearer realm="keyward", error="insufficient_scope", scope="admin"');
    expect(JSON.parse(res.body)).toMatchObject({ code: "insufficient_scope" });
    expect(seen.length).toBe(before);
    const adminKey = await issue({ scopes: ["admin"] });
    expect((await send(port, "/admin/users", { "x-api-key": adminKey.key })).status).toBe(200);
    // The admin key lacks orders:read.
    expect((await send(port, "/orders/1", { "x-api-key": adminKey.key })).status).toBe(403);
  });

  it("maps keyward's 429 back from auth_request's 500, with retry-after and rate-limit headers", async () => {
    const { key } = await issue({ rateLimit: 1, rateLimitWindowSeconds: 300 });
    const first = await send(port, "/orders/1", { "x-api-key": key });
    expect(first.status).toBe(200);
    expect(first.headers["x-ratelimit-limit"]).toBe("1");
    expect(first.headers["x-ratelimit-remaining"]).toBe("0");
    const limited = await send(port, "/orders/1", { "x-api-key": key });
    expect(limited.status).toBe(429);
    expect(Number(limited.headers["retry-after"])).toBeGreaterThanOrEqual(1);
    expect(Number(limited.headers["retry-after"])).toBeLessThanOrEqual(300);
    expect(JSON.parse(limited.body)).toMatchObject({ code: "rate_limited" });
  });

  it("needs only a valid key where no scopes are set", async () => {
    const { key, apiKey } = await issue({ scopes: [] });
    expect((await send(port, "/reports/daily", { "x-api-key": key, "x-keyward-scopes": "admin" })).status).toBe(200);
    expect(lastSeen().headers["x-keyward-key-id"]).toBe(apiKey!.id);
    // keyward's empty scopes header makes nginx drop the client's spoofed one.
    expect(lastSeen().headers["x-keyward-scopes"]).toBeUndefined();
    expect((await send(port, "/reports/daily")).status).toBe(401);
  });

  it("serves the public location without a key", async () => {
    expect((await send(port, "/healthz")).status).toBe(200);
    expect(lastSeen().url).toBe("/healthz");
    expect(lastSeen().headers["x-keyward-key-id"]).toBeUndefined();
  });

  // Last: stops keyward.
  it("fails closed with 503 when keyward cannot be reached", async () => {
    const { key } = await issue();
    await kw.stop();
    const before = seen.length;
    const res = await send(port, "/orders/1", { "x-api-key": key });
    expect(res.status).toBe(503);
    expect(JSON.parse(res.body)).toMatchObject({ code: "unavailable" });
    expect(seen.length).toBe(before);
  });
});
