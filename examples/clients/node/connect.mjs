// keyward from Node with Connect (connect-es): issue a key, then verify it.
//
//   npm start                                   # in another terminal (builds dist/)
//   KEYWARD_ADMIN_TOKEN=... node examples/clients/node/connect.mjs [--show-key]
//
// Environment: KEYWARD_URL (default http://127.0.0.1:50051), KEYWARD_ADMIN_TOKEN (required for Issue).
// The message and service descriptors are the repository's generated code (src/gen, compiled to
// dist/gen by `npm run build`); in your own project generate them with `buf generate` (protoc-gen-es).
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { KeyService, VerifyCodeSchema } from "../../../dist/gen/keyward/v1/keys_pb.js";

const baseUrl = process.env.KEYWARD_URL ?? "http://127.0.0.1:50051";
const adminToken = process.env.KEYWARD_ADMIN_TOKEN;
const showKey = process.argv.includes("--show-key");

// gRPC over HTTP/2 (h2c). createConnectTransport({ baseUrl, httpVersion: "1.1" }) speaks the
// Connect protocol instead; keyward serves both on the same port.
const keys = createClient(KeyService, createGrpcTransport({ baseUrl }));

// protobuf-es drops the enum prefix (VerifyCode.VALID); the descriptor has the proto name.
const codeName = (code) => VerifyCodeSchema.value[code]?.name ?? String(code);

async function main() {
  if (!adminToken) throw new Error("set KEYWARD_ADMIN_TOKEN (Issue is a management call)");

  // Management calls carry the admin token (or a keyward:admin key) as a bearer credential.
  const { key, apiKey } = await keys.issue(
    { tenantId: "acme", name: "node connect example", scopes: ["invoices:read"], rateLimit: 1000 },
    { headers: { authorization: `Bearer ${adminToken}` }, timeoutMs: 10_000 },
  );
  // The plaintext key is returned this once; keyward stores only its hash.
  console.log(`issued ${apiKey.id} (prefix ${apiKey.prefix}) for tenant ${apiKey.tenantId}`);
  if (showKey) console.log(`key: ${key}`);

  // Verify needs no credential. An invalid key is a normal answer (valid=false and a code), not an error.
  for (const scope of ["invoices:read", "invoices:write"]) {
    const res = await keys.verify({ key, requiredScopes: [scope] }, { timeoutMs: 10_000 });
    console.log(`verify ${scope}: valid=${res.valid} code=${codeName(res.code)}`);
  }
}

main().catch((err) => {
  // A failed RPC rejects with a ConnectError (err.code, err.rawMessage); its message reads
  // "[unauthenticated] invalid credential".
  console.error(`error: ${err instanceof Error ? err.message : err}`);
  process.exitCode = 1;
});
