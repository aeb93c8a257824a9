// keyward.v1.KeyService: wire ⇄ domain only; decisions live in src/core.
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { Authenticator } from "../core/auth.js";
import { callerOf } from "./call-context.js";
import { invalidArgument } from "../core/errors.js";
import { MAX_KEY_LENGTH } from "../core/key-format.js";
import type { KeyManager } from "../core/keys.js";
import type { UsageRecorder } from "../core/usage.js";
import type { Decision, Verifier } from "../core/verifier.js";
import { LIMITS } from "../core/validation.js";
import {
  KeyService,
  RateLimitStatusSchema,
  VerifyResponseSchema,
  type VerifyRequest,
  type VerifyResponse,
} from "../gen/keyward/v1/keys_pb.js";
import { apiKeyToProto, timestampToDate, verifyCodeToProto } from "./convert.js";
import { lean, type UnaryMethod } from "./grpc-unary.js";
import {
  cachedApiKeyToProto,
  decodeVerifyRequest,
  encodeVerifyResponse,
  encodeVerifyResponseFrame,
  type VerifyInput,
} from "./verify-codec.js";

export interface KeyServiceOptions {
  verifier: Verifier;
  keys: KeyManager;
  usage: UsageRecorder;
  auth: Authenticator;
}

/** Longest key accepted on the wire; longer input is a caller bug, not an unknown key. */
export const MAX_VERIFY_KEY_BYTES = Math.max(512, MAX_KEY_LENGTH);

export type VerifyHandler = (request: VerifyRequest) => VerifyResponse | Promise<VerifyResponse>;

/** Verify's input rules, shared by both paths: a caller bug is an error, an unknown key is not. */
export function checkVerifyInput(key: string, requiredScopes: readonly string[]): void {
  if (key === "") throw invalidArgument("key is required");
  if (key.length > MAX_VERIFY_KEY_BYTES) throw invalidArgument(`key must be at most ${MAX_VERIFY_KEY_BYTES} characters`);
  if (requiredScopes.length > LIMITS.scopes) {
    throw invalidArgument(`required_scopes may hold at most ${LIMITS.scopes} entries`);
  }
  for (const scope of requiredScopes) {
    if (scope.length === 0 || scope.length > LIMITS.scopeLength) {
      throw invalidArgument(`required_scopes entries must be 1-${LIMITS.scopeLength} characters`);
    }
  }
}

/** Verify for the Connect router (every protocol but lean gRPC). */
export function createVerifyHandler(options: Pick<KeyServiceOptions, "verifier" | "usage">): VerifyHandler {
  const { verifier, usage } = options;
  const respond = (decision: Decision): VerifyResponse =>
    create(VerifyResponseSchema, {
      valid: decision.code === "valid",
      code: verifyCodeToProto[decision.code],
      apiKey: decision.key ? cachedApiKeyToProto(decision.key, usage.pending(decision.key.id)) : undefined,
      rateLimit: decision.rateLimit
        ? create(RateLimitStatusSchema, {
            limit: decision.rateLimit.limit,
            remaining: decision.rateLimit.remaining,
            resetAt: timestampFromMs(decision.rateLimit.resetAt),
          })
        : undefined,
    });
  return (request) => {
    checkVerifyInput(request.key, request.requiredScopes);
    const decision = verifier.verify(request.key, request.requiredScopes);
    return decision instanceof Promise ? decision.then(respond) : respond(decision);
  };
}

/** Verify on the lean gRPC path: the same decision, with the hand-written codec. */
export function createVerifyMethod(options: Pick<KeyServiceOptions, "verifier" | "usage">): UnaryMethod {
  const { verifier, usage } = options;
  return lean<VerifyInput, Decision>({
    path: `/${KeyService.typeName}/${KeyService.method.verify.name}`,
    decode: decodeVerifyRequest,
    handle(input) {
      checkVerifyInput(input.key, input.requiredScopes);
      return verifier.verify(input.key, input.requiredScopes);
    },
    encode: (decision) => encodeVerifyResponse(decision, decision.key ? usage.pending(decision.key.id) : undefined),
    encodeFrame: (decision) => encodeVerifyResponseFrame(decision, decision.key ? usage.pending(decision.key.id) : undefined),
  });
}

export function createKeyService(options: KeyServiceOptions): ServiceImpl<typeof KeyService> {
  const { keys, usage, auth } = options;
  const verify = createVerifyHandler(options);
  const principal = (ctx: HandlerContext) => callerOf(auth, ctx);
  const view = (record: Parameters<typeof apiKeyToProto>[0]) => apiKeyToProto(record, usage.pending(record.id));

  return {
    verify: (request) => verify(request),

    async issue(request, ctx) {
      const { key, record } = await keys.issue(await principal(ctx), {
        tenantId: request.tenantId,
        name: request.name,
        nameAr: request.nameAr,
        scopes: request.scopes,
        rateLimit: request.rateLimit,
        rateLimitWindowSeconds: request.rateLimitWindowSeconds,
        expiresAt: timestampToDate("expires_at", request.expiresAt),
        metadata: request.metadata,
        prefix: request.prefix,
      });
      return { key, apiKey: view(record) };
    },

    async revoke(request, ctx) {
      return { apiKey: view(await keys.revoke(await principal(ctx), request.id, request.reason)) };
    },

    async getKey(request, ctx) {
      return { apiKey: view(await keys.get(await principal(ctx), request.id)) };
    },

    async listKeys(request, ctx) {
      const { records, nextPageToken } = await keys.list(await principal(ctx), {
        tenantId: request.tenantId,
        pageSize: request.pageSize,
        pageToken: request.pageToken,
        includeRevoked: request.includeRevoked,
      });
      return { apiKeys: records.map(view), nextPageToken };
    },

    async updateKey(request, ctx) {
      const caller = await principal(ctx);
      const record = await keys.update(
        caller,
        request.id,
        {
          name: request.name,
          nameAr: request.nameAr,
          scopes: request.scopes,
          rateLimit: request.rateLimit,
          rateLimitWindowSeconds: request.rateLimitWindowSeconds,
          expiresAt: timestampToDate("expires_at", request.expiresAt),
          enabled: request.enabled,
          metadata: request.metadata,
        },
        request.updateMask?.paths ?? [],
      );
      return { apiKey: view(record) };
    },
  };
}
