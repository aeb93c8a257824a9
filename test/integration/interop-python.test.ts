// A foreign client: Python grpcio (C-core HTTP/2) with stubs generated from our
// protos by Debian's protoc (through examples/clients/python/gen.py), calling
// keyward.v1.KeyService (Issue, Verify) and envoy.service.auth.v3.Authorization/Check
// against a keyward on port 0.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { preparePythonGrpc, type PythonGrpc } from "../helpers/python.js";
import { ADMIN_TOKEN } from "../helpers/core.js";
import { startKeyward, type RunningKeyward } from "../helpers/server.js";

// Prints one JSON object with what the calls returned.
const SCRIPT = String.raw`
import json, os
import grpc
from google.protobuf import json_format
from keyward.v1 import keys_pb2, keys_pb2_grpc
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc

target, admin = os.environ["KEYWARD_TARGET"], os.environ["KEYWARD_ADMIN"]
channel = grpc.insecure_channel(target)
grpc.channel_ready_future(channel).result(timeout=10)
keys = keys_pb2_grpc.KeyServiceStub(channel)
authz = external_auth_pb2_grpc.AuthorizationStub(channel)
out = {}

issued = keys.Issue(
    keys_pb2.IssueRequest(tenant_id="py-tenant", name="from python", name_ar="من بايثون", scopes=["orders:read"]),
    metadata=[("authorization", "Bearer " + admin)], timeout=10)
key = issued.key
out["issued"] = {"id": issued.api_key.id, "name_ar": issued.api_key.name_ar, "key_prefix": key.split("_")[0]}

v = keys.Verify(keys_pb2.VerifyRequest(key=key, required_scopes=["orders:read"]), timeout=10)
out["verify"] = {"valid": v.valid, "code": keys_pb2.VerifyCode.Name(v.code), "id": v.api_key.id, "tenant": v.api_key.tenant_id}
gz = keys.Verify(keys_pb2.VerifyRequest(key=key, required_scopes=["billing:write"]), timeout=10, compression=grpc.Compression.Gzip)
out["verify_scope_gzip"] = {"valid": gz.valid, "code": keys_pb2.VerifyCode.Name(gz.code)}
try:
    keys.Verify(keys_pb2.VerifyRequest(key=""), timeout=10)
    out["verify_empty"] = "OK"
except grpc.RpcError as e:
    out["verify_empty"] = e.code().name

def check(headers=None, raw=None, scopes=None):
    req = external_auth_pb2.CheckRequest()
    http = req.attributes.request.http
    http.method, http.path, http.host, http.protocol = "GET", "/orders/42", "api.example.com", "HTTP/1.1"
    for k, val in (headers or {}).items():
        http.headers[k] = val
    for k, val in (raw or []):
        http.header_map.headers.add(key=k, raw_value=val.encode())
    if scopes is not None:
        req.attributes.context_extensions["required_scopes"] = scopes
    r = authz.Check(req, timeout=10)
    which = r.WhichOneof("http_response")
    res = {"code": r.status.code, "which": which, "metadata": json_format.MessageToDict(r.dynamic_metadata)}
    if which == "ok_response":
        res["headers"] = {h.header.key: h.header.value for h in r.ok_response.headers}
        res["remove"] = sorted(r.ok_response.headers_to_remove)
    else:
        d = r.denied_response
        res["status"] = d.status.code
        res["headers"] = {h.header.key: h.header.value for h in d.headers}
        res["body"] = json.loads(d.body)
    return res

out["check_allowed"] = check({"x-api-key": key, "x-keyward-key-id": "key_spoofed", "x-keyward-extra": "1"}, scopes="orders:read")
out["check_raw"] = check(raw=[("authorization", "Bearer " + key)])
out["check_scope"] = check({"x-api-key": key}, scopes="orders:read, billing:write")
out["check_unknown"] = check({"x-api-key": "kw_0000000000000000000000000000000000000"})
out["check_missing"] = check({})
print(json.dumps(out))
`;

let python: PythonGrpc | undefined;
try {
  python = await preparePythonGrpc();
} catch (error) {
  if (process.env.CI) throw error;
  console.warn(`WARNING: generating Python stubs failed (${(error as Error).message}); skipping`);
}

describe.runIf(python)("Python grpcio interop", () => {
  let kw: RunningKeyward;
  let result: Record<string, any>;

  beforeAll(async () => {
    kw = await startKeyward();
    const stdout = await python!.runScript(SCRIPT, { KEYWARD_TARGET: `127.0.0.1:${kw.port}`, KEYWARD_ADMIN: ADMIN_TOKEN });
    result = JSON.parse(stdout);
  });
  afterAll(async () => {
    await kw?.stop();
    await python?.dispose();
  });

  it("issues with admin metadata and verifies (plain and gzip-compressed) from Python", () => {
    expect(result.issued).toMatchObject({ name_ar: "من بايثون", key_prefix: "kw" });
    expect(result.verify).toEqual({ valid: true, code: "VERIFY_CODE_VALID", id: result.issued.id, tenant: "py-tenant" });
    expect(result.verify_scope_gzip).toEqual({ valid: false, code: "VERIFY_CODE_INSUFFICIENT_SCOPE" });
    expect(result.verify_empty).toBe("INVALID_ARGUMENT");
  });

  it("gets an ok_response for a valid key from Check, with spoofed identity replaced or removed", () => {
    expect(result.check_allowed).toEqual({
      code: 0,
      which: "ok_response",
      headers: { "x-keyward-key-id": result.issued.id, "x-keyward-tenant-id": "py-tenant", "x-keyward-scopes": "orders:read" },
      remove: ["x-api-key", "x-keyward-extra"],
      metadata: { key_id: result.issued.id, tenant_id: "py-tenant", scopes: ["orders:read"] },
    });
    expect(result.check_raw).toMatchObject({ code: 0, which: "ok_response", remove: ["authorization"] });
  });

  it("gets denied_response shapes from Check: 403 PERMISSION_DENIED, 401 UNAUTHENTICATED", () => {
    expect(result.check_scope).toMatchObject({
      code: 7,
      which: "denied_response",
      status: 403,
      body: { code: "insufficient_scope" },
      headers: { "content-type": "application/json", "www-authenticate": 'Bearer realm="keyward", error="insufficient_scope", scope="billing:write"' },
    });
    expect(result.check_unknown).toMatchObject({ code: 16, which: "denied_response", status: 401, body: { code: "invalid_key" } });
    expect(result.check_missing).toMatchObject({ code: 16, status: 401, body: { code: "missing_key" }, headers: { "www-authenticate": 'Bearer realm="keyward"' } });
  });
});
