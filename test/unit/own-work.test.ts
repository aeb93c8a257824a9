// What `npm run bench:micro` times must be the cache-hit answers keyward gives:
// a VALID Verify and an allowed Check, counted against the key's rate limit.
import { fromBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { createOwnWork } from "../../bench/lib/own-work.js";
import { CheckResponseSchema } from "../../src/gen/envoy/service/auth/v3/external_auth_pb.js";
import { VerifyCode, VerifyResponseSchema } from "../../src/gen/keyward/v1/keys_pb.js";

const message = (frame: Buffer) => {
  expect(frame[0]).toBe(0);
  expect(frame.readUInt32BE(1)).toBe(frame.length - 5);
  return frame.subarray(5);
};

describe("bench:micro's stages", () => {
  it("answer a Verify hit VALID with the key and its window, one request counted per call", () => {
    const work = createOwnWork();
    const first = fromBinary(VerifyResponseSchema, message(work.verifyFrame()));
    const second = fromBinary(VerifyResponseSchema, message(work.verifyFrame()));
    expect(first.code).toBe(VerifyCode.VALID);
    expect(first.valid).toBe(true);
    expect(first.apiKey?.id).toBe("key_bench_micro");
    expect(first.rateLimit?.limit).toBe(2_000_000_000);
    expect(second.rateLimit!.remaining).toBe(first.rateLimit!.remaining - 1);
  });

  it("answer a Check hit allowed, with the key's identity upstream and the credential removed", () => {
    const work = createOwnWork();
    const response = fromBinary(CheckResponseSchema, message(work.checkFrame()));
    expect(response.status?.code ?? 0).toBe(0);
    if (response.httpResponse.case !== "okResponse") throw new Error(`not allowed: ${response.httpResponse.case}`);
    const ok = response.httpResponse.value;
    expect(ok.headers.map((h) => h.header?.key)).toContain("x-keyward-key-id");
    expect(ok.headers.find((h) => h.header?.key === "x-keyward-key-id")?.header?.value).toBe("key_bench_micro");
    expect(ok.headersToRemove).toContain("x-api-key");
    expect(ok.responseHeadersToAdd.map((h) => h.header?.key)).toContain("x-ratelimit-remaining");
  });

  it("every timed stage returns something (the runner counts on it)", () => {
    const { cases } = createOwnWork();
    expect(cases.map((c) => `${c.rpc} ${c.stage}`)).toEqual([
      "Verify decode",
      "Verify decide (handle)",
      "Verify encode (frame)",
      "Verify all three",
      "Check decode",
      "Check decide (handle)",
      "Check encode (frame)",
      "Check all three",
      "both SHA-256 of the key (the cache's key)",
      "both cache peek",
    ]);
    for (const c of cases) expect(c.run()).not.toBeUndefined();
  });
});
