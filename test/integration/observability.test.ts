// Metrics at GET /metrics and structured logs: counts by result code and RPC,
// cache and usage state, bounded labels, one log line per management call with
// request and trace ids, no line per Verify unless sampled, never key material.
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Authorization } from "../../src/gen/envoy/service/auth/v3/external_auth_pb.js";
import { KeyService, VerifyCode } from "../../src/gen/keyward/v1/keys_pb.js";
import { connectClients, grpcJsClients } from "../helpers/clients.js";
import { adminHeaders, startKeyward, type RunningKeyward } from "../helpers/server.js";

function metric(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-z_]+)(\{([^}]*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = (m[3] ?? "").split(",");
    if (want.every((w) => have.includes(w))) return Number(m[4]);
  }
  return undefined;
}

const glibc = process.platform === "linux" && (process.report.getReport() as { header: { glibcVersionRuntime?: string } }).header.glibcVersionRuntime !== undefined;

describe("observability", () => {
  let kw: RunningKeyward;
  const grpc = grpcJsClients();
  beforeAll(async () => {
    kw = await startKeyward({ env: { KEYWARD_LOG_LEVEL: "info" } });
  });
  afterAll(async () => {
    grpc.close();
    await kw.stop();
  });

  it("counts decisions, calls, cache and usage with bounded labels", async () => {
    const keys = grpc.client(KeyService, kw.baseUrl);
    const issued = await keys.issue({ tenantId: "tenant-secret-name", scopes: ["a"] }, { headers: adminHeaders });
    for (let i = 0; i < 5; i++) expect((await keys.verify({ key: issued.key, requiredScopes: ["a"] })).code).toBe(VerifyCode.VALID);
    await keys.verify({ key: issued.key, requiredScopes: ["b"] });
    await keys.verify({ key: "kw_nope" });
    await connectClients("connect-json").client(KeyService, kw.baseUrl).verify({ key: issued.key });
    await grpc.client(Authorization, kw.baseUrl).check({ attributes: { request: { http: { headers: { "x-api-key": issued.key } } } } });

    const res = await fetch(`${kw.baseUrl}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/plain/);
    const text = await res.text();
    expect(metric(text, "keyward_decisions_total", { result: "valid" })).toBe(7);
    expect(metric(text, "keyward_decisions_total", { result: "insufficient_scope" })).toBe(1);
    expect(metric(text, "keyward_decisions_total", { result: "not_found" })).toBe(1);
    expect(metric(text, "keyward_rpc_requests_total", { method: "/keyward.v1.KeyService/Verify", code: "ok" })).toBe(8);
    expect(metric(text, "keyward_rpc_requests_total", { method: "/keyward.v1.KeyService/Issue", code: "ok" })).toBe(1);
    expect(metric(text, "keyward_rpc_duration_seconds_count", { method: "/envoy.service.auth.v3.Authorization/Check" })).toBe(1);
    expect(metric(text, "keyward_cache_entries", { kind: "positive" })).toBe(1);
    expect(metric(text, "keyward_cache_hits_total")).toBeGreaterThanOrEqual(7);
    expect(metric(text, "keyward_usage_pending_keys")).toBe(1);
    expect(metric(text, "keyward_database_up")).toBe(1);
    expect(metric(text, "keyward_build_info", { version: "0.1.0" })).toBe(1);
    expect(metric(text, "process_resident_memory_bytes")).toBeGreaterThan(0);
    // Bounded labels: no key id, tenant id or key material anywhere.
    expect(text).not.toContain(issued.apiKey!.id);
    expect(text).not.toContain("tenant-secret-name");
    expect(text).not.toContain(issued.key.slice(3));

    await kw.app.usage.flush();
    const after = await (await fetch(`${kw.baseUrl}/metrics`)).text();
    expect(metric(after, "keyward_usage_flushes_total")).toBeGreaterThanOrEqual(0);
    expect(metric(after, "keyward_usage_pending_keys")).toBe(0);
    // Counters never go backwards between scrapes.
    expect(metric(after, "keyward_decisions_total", { result: "valid" })).toBe(7);
  });

  it.runIf(glibc)("counts malloc_trim calls after full GCs", async () => {
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    const trims = async () => metric(await (await fetch(`${kw.baseUrl}/metrics`)).text(), "keyward_malloc_trims_total");
    const before = await trims();
    expect(before).toBeGreaterThanOrEqual(0);
    gc();
    // The trim follows a full GC after 500 ms, at most every 10 s.
    const deadline = Date.now() + 15_000;
    while ((await trims())! <= before! && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(await trims()).toBeGreaterThan(before!);
  }, 20_000);

  it("exports the idle GC's counters", async () => {
    const text = await (await fetch(`${kw.baseUrl}/metrics`)).text();
    expect(metric(text, "keyward_idle_gcs_total")).toBeGreaterThanOrEqual(0);
    expect(metric(text, "keyward_idle_gc_seconds_total")).toBeGreaterThanOrEqual(0);
  });

  it("logs one line per management call with request and trace ids, none per Verify", async () => {
    const keys = connectClients("connect-json").client(KeyService, kw.baseUrl);
    const before = kw.logs.length;
    const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
    const issued = await keys.issue(
      { tenantId: "acme", name: "logged" },
      { headers: { ...adminHeaders, "x-request-id": "req-123", traceparent: `00-${traceId}-00f067aa0ba902b7-01` } },
    );
    for (let i = 0; i < 10; i++) await keys.verify({ key: issued.key });
    await keys.getKey({ id: "key_missing" }, { headers: adminHeaders }).catch(() => {});
    const lines = kw.logs.slice(before).map((l) => JSON.parse(l) as Record<string, unknown>);
    const management = lines.filter((l) => l.msg === "management call");
    expect(management).toHaveLength(2);
    expect(management[0]).toMatchObject({ rpc: "/keyward.v1.KeyService/Issue", code: "OK", requestId: "req-123", traceId, actor: "admin" });
    expect(management[1]).toMatchObject({ rpc: "/keyward.v1.KeyService/GetKey", code: "NotFound", actor: "admin" });
    expect(typeof management[1]!.requestId).toBe("string");
    expect(lines.filter((l) => String(l.rpc).endsWith("/Verify"))).toHaveLength(0);
    expect(JSON.stringify(lines)).not.toContain(issued.key);
  });
});
