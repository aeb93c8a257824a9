#!/usr/bin/env python3
"""keyward from Python grpcio: issue a key, verify it, then ask the Envoy ext_authz
Check endpoint about a request carrying it.

    python3 gen.py                                   # once: generates ./gen
    KEYWARD_ADMIN_TOKEN=... python3 client.py [--show-key]

Environment: KEYWARD_ADDR (default 127.0.0.1:50051), KEYWARD_ADMIN_TOKEN (required for Issue).
"""
import json
import os
import sys

import grpc

# The generated modules: ./gen (python3 gen.py), or any directory already on PYTHONPATH.
sys.path.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), "gen"))
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc  # noqa: E402
from keyward.v1 import keys_pb2, keys_pb2_grpc  # noqa: E402

TIMEOUT = 10  # seconds, per call
STATUS_NAMES = {status.value[0]: status.name for status in grpc.StatusCode}


def check(authz, headers, required_scopes):
    """Asks keyward what Envoy would ask about GET /invoices/42 with these headers."""
    request = external_auth_pb2.CheckRequest()
    http = request.attributes.request.http
    http.method, http.path, http.host, http.protocol = "GET", "/invoices/42", "api.example.com", "HTTP/1.1"
    http.headers.update(headers)
    # Per-route scopes, as Envoy sends them from the route's context_extensions.
    request.attributes.context_extensions["required_scopes"] = required_scopes
    response = authz.Check(request, timeout=TIMEOUT)
    if response.HasField("ok_response"):
        # Envoy would forward the request with these headers set (caller-supplied ones replaced).
        upstream = {h.header.key: h.header.value for h in response.ok_response.headers}
        return "allowed key_id=%s tenant=%s" % (upstream.get("x-keyward-key-id"), upstream.get("x-keyward-tenant-id"))
    denied = response.denied_response
    return "denied http=%d grpc=%s error=%s" % (
        denied.status.code, STATUS_NAMES.get(response.status.code), json.loads(denied.body).get("code"))


def main():
    addr = os.environ.get("KEYWARD_ADDR", "127.0.0.1:50051")
    admin_token = os.environ.get("KEYWARD_ADMIN_TOKEN")
    if not admin_token:
        sys.exit("error: set KEYWARD_ADMIN_TOKEN (Issue is a management call)")

    with grpc.insecure_channel(addr) as channel:  # plaintext HTTP/2 (h2c)
        keys = keys_pb2_grpc.KeyServiceStub(channel)
        authz = external_auth_pb2_grpc.AuthorizationStub(channel)
        try:
            # Management calls carry the admin token (or a keyward:admin key) as a bearer credential.
            issued = keys.Issue(
                keys_pb2.IssueRequest(tenant_id="acme", name="python example", scopes=["invoices:read"], rate_limit=1000),
                metadata=[("authorization", "Bearer " + admin_token)],
                timeout=TIMEOUT,
            )
            # The plaintext key is returned this once; keyward stores only its hash.
            key = issued.key
            print("issued %s (prefix %s) for tenant %s" % (issued.api_key.id, issued.api_key.prefix, issued.api_key.tenant_id))
            if "--show-key" in sys.argv[1:]:
                print("key: " + key)

            # Verify needs no credential. An invalid key is a normal answer (valid=false and a code), not an error.
            for scope in ("invoices:read", "invoices:write"):
                result = keys.Verify(keys_pb2.VerifyRequest(key=key, required_scopes=[scope]), timeout=TIMEOUT)
                print("verify %s: valid=%s code=%s" % (scope, str(result.valid).lower(), keys_pb2.VerifyCode.Name(result.code)))

            # Envoy ext_authz (envoy.service.auth.v3.Authorization/Check) on the same port.
            print("check with key: " + check(authz, {"x-api-key": key}, "invoices:read"))
            print("check without key: " + check(authz, {}, "invoices:read"))
        except grpc.RpcError as error:
            sys.exit("error: %s: %s" % (error.code().name, error.details()))


if __name__ == "__main__":
    main()
