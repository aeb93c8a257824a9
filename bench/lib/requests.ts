// What the bench sends and how one answer of each kind is checked: request
// bodies built with the generated protobuf-es schemas, and probes that send
// the very bytes h2load will send and decode the answer (grpc-status from the
// trailers, then the message), so a scenario that answers the wrong thing
// fails before it is measured.
import { request as httpRequest } from "node:http";
import { connect, type IncomingHttpHeaders } from "node:http2";
import { create, fromBinary, toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { CheckRequestSchema, CheckResponseSchema, type CheckResponse } from "../../src/gen/envoy/service/auth/v3/external_auth_pb.js";
import { HealthCheckRequestSchema, HealthCheckResponseSchema } from "../../src/gen/grpc/health/v1/health_pb.js";
import { VerifyRequestSchema, VerifyResponseSchema, type VerifyResponse } from "../../src/gen/keyward/v1/keys_pb.js";

export const VERIFY_PATH = "/keyward.v1.KeyService/Verify";
export const CHECK_PATH = "/envoy.service.auth.v3.Authorization/Check";
export const HEALTH_PATH = "/grpc.health.v1.Health/Check";
export const CEILING_PATH = "/bench.v1.Ceiling/Empty";

export const GRPC_HEADERS = { "content-type": "application/grpc", te: "trailers" } as const;
export const JSON_HEADERS = { "content-type": "application/json" } as const;

/** One uncompressed gRPC message: flag 0, big-endian length, payload. */
export function grpcFrame(payload: Uint8Array): Buffer {
  const out = Buffer.alloc(5 + payload.length);
  out.writeUInt32BE(payload.length, 1);
  out.set(payload, 5);
  return out;
}

export function verifyBody(key: string, requiredScopes: string[]): Buffer {
  return grpcFrame(toBinary(VerifyRequestSchema, create(VerifyRequestSchema, { key, requiredScopes })));
}

export function verifyJsonBody(key: string, requiredScopes: string[]): Buffer {
  return Buffer.from(JSON.stringify({ key, requiredScopes }));
}

export function healthBody(service = ""): Buffer {
  return grpcFrame(toBinary(HealthCheckRequestSchema, create(HealthCheckRequestSchema, { service })));
}

/**
 * What Envoy's ext_authz filter sends for `GET /orders/42` through a route
 * requiring `requiredScopes`: peers, request id, ten headers including
 * x-api-key, and context_extensions.
 */
export function checkBody(key: string, requiredScopes: string[]): Buffer {
  const request = create(CheckRequestSchema, {
    attributes: {
      source: { address: { address: { case: "socketAddress", value: { address: "10.0.0.7", portSpecifier: { case: "portValue", value: 51234 } } } } },
      destination: { address: { address: { case: "socketAddress", value: { address: "10.0.0.2", portSpecifier: { case: "portValue", value: 8080 } } } } },
      request: {
        time: timestampFromMs(Date.parse("2026-01-01T00:00:00Z")),
        http: {
          id: "5c0d9d6e-8f37-4b2b-9c7e-0a1b2c3d4e5f",
          method: "GET",
          path: "/orders/42?expand=items",
          host: "api.example.com",
          scheme: "https",
          protocol: "HTTP/2",
          size: -1n,
          headers: {
            ":authority": "api.example.com",
            ":method": "GET",
            ":path": "/orders/42?expand=items",
            ":scheme": "https",
            "user-agent": "curl/8.5.0",
            accept: "application/json",
            "accept-encoding": "gzip, br",
            "x-forwarded-proto": "https",
            "x-request-id": "5c0d9d6e-8f37-4b2b-9c7e-0a1b2c3d4e5f",
            "x-api-key": key,
          },
        },
      },
      contextExtensions: { required_scopes: requiredScopes.join(",") },
    },
  });
  return grpcFrame(toBinary(CheckRequestSchema, request));
}

export interface GrpcProbe {
  grpcStatus: string | undefined;
  grpcMessage: string | undefined;
  /** The response body as h2load counts it: every DATA byte, prefix included. */
  bodyBytes: number;
  /** The message payload (prefix removed). */
  payload: Buffer;
}

/** One gRPC call over a fresh HTTP/2 connection with exactly the given headers and body. */
export function probeGrpc(baseUrl: string, path: string, headers: Record<string, string>, body: Buffer): Promise<GrpcProbe> {
  return new Promise((resolve, reject) => {
    const session = connect(baseUrl);
    session.on("error", reject);
    const stream = session.request({ ":method": "POST", ":path": path, ...headers });
    let grpcStatus: string | undefined;
    let grpcMessage: string | undefined;
    const take = (h: IncomingHttpHeaders) => {
      if (h["grpc-status"] !== undefined) grpcStatus = String(h["grpc-status"]);
      if (h["grpc-message"] !== undefined) grpcMessage = decodeURIComponent(String(h["grpc-message"]));
    };
    const chunks: Buffer[] = [];
    stream.on("response", take);
    stream.on("trailers", take);
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("error", reject);
    stream.on("close", () => {
      session.close();
      const all = Buffer.concat(chunks);
      resolve({ grpcStatus, grpcMessage, bodyBytes: all.length, payload: all.subarray(5) });
    });
    stream.end(body);
  });
}

/** One HTTP/1.1 POST, as h2load --h1 sends it. */
export function probeHttp1(baseUrl: string, path: string, headers: Record<string, string>, body: Buffer): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(new URL(path, baseUrl), { method: "POST", headers: { ...headers, "content-length": body.length } }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(body);
  });
}

function decode<S extends DescMessage>(schema: S, probe: GrpcProbe): MessageShape<S> {
  if (probe.grpcStatus !== "0") throw new Error(`grpc-status ${probe.grpcStatus ?? "missing"}: ${probe.grpcMessage ?? ""}`);
  return fromBinary(schema, probe.payload);
}

export const decodeVerify = (probe: GrpcProbe): VerifyResponse => decode(VerifyResponseSchema, probe);
export const decodeCheck = (probe: GrpcProbe): CheckResponse => decode(CheckResponseSchema, probe);
export const decodeHealth = (probe: GrpcProbe) => decode(HealthCheckResponseSchema, probe);

/** "allowed" or the denial's HTTP status, from a CheckResponse. */
export function checkOutcome(response: CheckResponse): string {
  if ((response.status?.code ?? 0) === 0 && response.httpResponse.case === "okResponse") return "allowed";
  if (response.httpResponse.case === "deniedResponse") return `denied ${response.httpResponse.value.status?.code ?? "?"}`;
  return `status ${response.status?.code ?? 0} without an http response`;
}
