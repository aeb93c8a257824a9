// Verify driven with a different key on every request (node:http2 client,
// see http2-load.ts): every answer's trailers and code are checked.
import { fromBinary } from "@bufbuild/protobuf";
import { VerifyCode, VerifyResponseSchema } from "../../src/gen/keyward/v1/keys_pb.js";
import { grpcAnswer, runHttp2Load, type Http2LoadResult } from "./http2-load.js";
import { GRPC_HEADERS, VERIFY_PATH, verifyBody } from "./requests.js";

// VerifyResponse{code: NOT_FOUND}: field 2, varint 2; valid=false is not encoded.
const NOT_FOUND_PAYLOAD = Buffer.from([0x10, VerifyCode.NOT_FOUND]);

export function verifyBodies(keys: readonly string[], scopes: string[]): Buffer[] {
  return keys.map((key) => verifyBody(key, scopes));
}

export interface VerifyLoadOptions {
  baseUrl: string;
  bodies: readonly Buffer[];
  offset?: number;
  requests: number;
  connections: number;
  streams: number;
  expected: VerifyCode.VALID | VerifyCode.NOT_FOUND;
}

export function runVerifyLoad(options: VerifyLoadOptions): Promise<Http2LoadResult> {
  const check =
    options.expected === VerifyCode.NOT_FOUND
      ? grpcAnswer((payload) => (payload.equals(NOT_FOUND_PAYLOAD) ? undefined : `answer is not VERIFY_CODE_NOT_FOUND (${payload.toString("hex").slice(0, 40)})`))
      : grpcAnswer((payload) => {
          const response = fromBinary(VerifyResponseSchema, payload);
          if (response.valid && response.code === VerifyCode.VALID && response.apiKey !== undefined) return undefined;
          return `answer is VERIFY_CODE_${VerifyCode[response.code]}, not VALID`;
        });
  return runHttp2Load({
    baseUrl: options.baseUrl,
    path: VERIFY_PATH,
    headers: { ...GRPC_HEADERS },
    bodies: options.bodies,
    offset: options.offset,
    requests: options.requests,
    connections: options.connections,
    streams: options.streams,
    check,
  });
}

/** Problems of a node-client run: every answer must have passed its check. */
export function loadProblems(result: Http2LoadResult): string[] {
  return Object.entries(result.problems).map(([problem, count]) => `${count} × ${problem}`);
}

/** A key with the right shape whose checksum is wrong: the last checksum character changed. */
export function malformedFrom(key: string): string {
  const last = key.at(-1)!;
  return key.slice(0, -1) + (last === "A" ? "B" : "A");
}
