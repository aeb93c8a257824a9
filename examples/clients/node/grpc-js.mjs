// keyward from Node with @grpc/grpc-js, loading the .proto files at run time with
// @grpc/proto-loader (no code generation): issue a key, then verify it.
//
//   npm start                                   # in another terminal
//   KEYWARD_ADMIN_TOKEN=... node examples/clients/node/grpc-js.mjs [--show-key]
//
// Environment: KEYWARD_ADDR (default 127.0.0.1:50051), KEYWARD_ADMIN_TOKEN (required for Issue).
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

const addr = process.env.KEYWARD_ADDR ?? "127.0.0.1:50051";
const adminToken = process.env.KEYWARD_ADMIN_TOKEN;
const showKey = process.argv.includes("--show-key");

// google/protobuf/*.proto imports are resolved by proto-loader's bundled well-known types.
const definition = protoLoader.loadSync("keyward/v1/keys.proto", {
  includeDirs: [fileURLToPath(new URL("../../../proto", import.meta.url))],
  enums: String, // VerifyCode as its proto name, e.g. "VERIFY_CODE_VALID"
  longs: String, // int64 request_count as a string
  defaults: true,
});
const { KeyService } = grpc.loadPackageDefinition(definition).keyward.v1;
const keys = new KeyService(addr, grpc.credentials.createInsecure()); // plaintext HTTP/2 (h2c)

// Promise wrapper for a unary call with a 10 s deadline.
function call(method, request, metadata = new grpc.Metadata()) {
  return new Promise((resolve, reject) => {
    keys[method](request, metadata, { deadline: Date.now() + 10_000 }, (err, response) => {
      if (err) reject(Object.assign(err, { method }));
      else resolve(response);
    });
  });
}

async function main() {
  if (!adminToken) throw new Error("set KEYWARD_ADMIN_TOKEN (Issue is a management call)");

  // Management calls carry the admin token (or a keyward:admin key) as a bearer credential.
  const admin = new grpc.Metadata();
  admin.set("authorization", `Bearer ${adminToken}`);
  const { key, apiKey } = await call(
    "Issue",
    { tenantId: "acme", name: "node grpc-js example", scopes: ["invoices:read"], rateLimit: 1000 },
    admin,
  );
  // The plaintext key is returned this once; keyward stores only its hash.
  console.log(`issued ${apiKey.id} (prefix ${apiKey.prefix}) for tenant ${apiKey.tenantId}`);
  if (showKey) console.log(`key: ${key}`);

  // Verify needs no credential. An invalid key is a normal answer (valid=false and a code), not an error.
  for (const scope of ["invoices:read", "invoices:write"]) {
    const res = await call("Verify", { key, requiredScopes: [scope] });
    console.log(`verify ${scope}: valid=${res.valid} code=${res.code}`);
  }
}

try {
  await main();
} catch (err) {
  // A failed RPC has a numeric gRPC status code and a message in `details`.
  if (typeof err.code === "number") console.error(`error: ${err.method}: ${grpc.status[err.code]}: ${err.details}`);
  else console.error(`error: ${err.message}`);
  process.exitCode = 1;
} finally {
  keys.close();
}
