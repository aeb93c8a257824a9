// envoy.service.auth.v3.Authorization/Check: wire ⇄ domain only. The decision
// is the verifier's (the same call as Verify: one cache, one rate limiter, one
// usage counter); the HTTP shape is authz-response.ts's. A denial is a normal
// CheckResponse with denied_response, never an RPC error, so Envoy shows the
// client our status, headers and body whatever failure_mode_allow says.
//
// The decision works on a small wire-independent CheckInput and yields a
// CheckResult. The Connect router converts protobuf-es messages to and from
// them; the lean gRPC path uses the hand-written codec in check-codec.ts,
// because reflection-based decoding of a full CheckRequest and encoding of a
// CheckResponse cost more than everything else on a cache hit.
import { create, type JsonObject } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import type { Clock } from "../core/model.js";
import type { Decision, Verifier } from "../core/verifier.js";
import {
  HeaderValueOption_HeaderAppendAction,
  HeaderValueOptionSchema,
  type HeaderValueOption,
} from "../gen/envoy/config/core/v3/base_pb.js";
import {
  Authorization,
  CheckResponseSchema,
  type CheckRequest,
  type CheckResponse,
} from "../gen/envoy/service/auth/v3/external_auth_pb.js";
import type { StatusCode } from "../gen/envoy/type/v3/http_status_pb.js";
import {
  decisionOutcome,
  failureOutcome,
  findCredential,
  invalidCredential,
  IDENTITY_HEADER_PREFIX,
  missingCredential,
  parseRequiredScopes,
  rateLimitHeaders,
  REQUIRED_SCOPES_PARAM,
  type AllowOutcome,
  type CredentialOptions,
  type DenyOutcome,
  type Header,
  type HeaderLookup,
} from "./authz-response.js";
import { createHeaderFilter, decodeCheckRequest, encodeCheckResponse, encodeCheckResponseFrame } from "./check-codec.js";
import { lean, type UnaryMethod } from "./grpc-unary.js";

export interface ExtAuthzOptions {
  verifier: Pick<Verifier, "verify">;
  credential: CredentialOptions;
  /** Put the credential header in headers_to_remove so the upstream never sees the key. */
  removeCredential: boolean;
  clock: Clock;
  /** A decision that failed (storage down, a bug); the request is denied regardless. */
  onError?: (error: unknown) => void;
}

/** What the decision reads from a CheckRequest (attributes.request.http and context_extensions). */
export interface CheckInput {
  /** http.headers as sent (Envoy lowercases names): one entry per name, with the last map entry's value. */
  headers: readonly Header[];
  /** http.header_map.headers in order: value, or raw_value as UTF-8 when value is empty. */
  headerMap: readonly Header[];
  /** context_extensions["required_scopes"], when present. */
  requiredScopes: string | undefined;
}

/** google.protobuf.Struct entries for dynamic_metadata: a string or a list of strings. */
export type MetadataEntry = readonly [name: string, value: string | readonly string[]];

/** ok_response: what Envoy changes on the upstream request and the client's response. */
export interface CheckAllow {
  allowed: true;
  /** Set on results shared between calls (never changed): encoders may keep their bytes. */
  shared?: true;
  /** Set on the upstream request with OVERWRITE_IF_EXISTS_OR_ADD. */
  headers: readonly Header[];
  headersToRemove: readonly string[];
  /** Added to the client's response with OVERWRITE_IF_EXISTS_OR_ADD. */
  responseHeaders: readonly Header[];
  metadata: readonly MetadataEntry[];
  /**
   * A shared result whose headers, headersToRemove and metadata this one
   * reuses (only responseHeaders differ: a rate-limited key's x-ratelimit-*),
   * so encoders may keep the bytes of those parts.
   */
  base?: CheckAllow;
}

/** status + denied_response: what the client gets instead of the upstream. */
export interface CheckDeny {
  allowed: false;
  /** As CheckAllow.shared. */
  shared?: true;
  /** google.rpc.Code for CheckResponse.status (non-zero). */
  rpcCode: number;
  message: string;
  /** HTTP status for the client. */
  status: number;
  /** Response headers, each with OVERWRITE_IF_EXISTS_OR_ADD. */
  headers: readonly Header[];
  body: string;
  metadata: readonly MetadataEntry[];
}

export type CheckResult = CheckAllow | CheckDeny;

type KeyOf<D extends { key: unknown }> = NonNullable<D["key"]>;

export type CheckDecider = (input: CheckInput) => CheckResult | Promise<CheckResult>;
export type CheckHandler = (request: CheckRequest) => CheckResponse | Promise<CheckResponse>;

// google.rpc.Code for each denial status Envoy will see.
const RPC_CODE: Record<DenyOutcome["status"], number> = {
  401: 16, // UNAUTHENTICATED
  403: 7, // PERMISSION_DENIED
  429: 8, // RESOURCE_EXHAUSTED
  500: 13, // INTERNAL
  503: 14, // UNAVAILABLE
};

const OVERWRITE = HeaderValueOption_HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD;
// Not fatal and BOM-stripping: raw_value is bytes, decoded as it always was.
const decoder = new TextDecoder();

/** The CheckInput of a protobuf-es CheckRequest (the Connect router's path). */
export function checkInputOf(request: CheckRequest): CheckInput {
  const attributes = request.attributes;
  const http = attributes?.request?.http;
  const headers: Header[] = [];
  const headerMap: Header[] = [];
  if (http) {
    for (const name in http.headers) headers.push([name, http.headers[name]!]);
    for (const h of http.headerMap?.headers ?? []) headerMap.push([h.key, h.value !== "" ? h.value : decoder.decode(h.rawValue)]);
  }
  return { headers, headerMap, requiredScopes: attributes?.contextExtensions[REQUIRED_SCOPES_PARAM] };
}

/**
 * The headers the decision looks at. Envoy sends `headers` (lowercase keys,
 * repeats merged with ",") or, with encode_raw_headers, `header_map` (key +
 * raw_value). Both are read, names compared lowercase, repeats joined with ","
 * as Envoy does. Only the credential headers' values are kept: nothing else
 * is ever looked up.
 */
class RequestView implements HeaderLookup {
  private apiKey: string | undefined;
  private authorization: string | undefined;
  /** Lowercase names of every x-keyward-* header the client sent, first-seen order (undefined: none). */
  identityHeaders: string[] | undefined;
  // Created only when the client sends x-keyward-* headers; a Set keeps many of them linear.
  private identitySeen: Set<string> | undefined;

  constructor(
    private readonly apiKeyHeader: string,
    input: CheckInput,
  ) {
    for (const [name, value] of input.headers) this.add(name, value);
    for (const [name, value] of input.headerMap) this.add(name, value);
  }

  private add(name: string, value: string): void {
    const lower = name.toLowerCase();
    if (lower === this.apiKeyHeader) this.apiKey = this.apiKey === undefined ? value : `${this.apiKey},${value}`;
    else if (lower === "authorization") this.authorization = this.authorization === undefined ? value : `${this.authorization},${value}`;
    if (lower.startsWith(IDENTITY_HEADER_PREFIX)) {
      this.identitySeen ??= new Set();
      if (!this.identitySeen.has(lower)) {
        this.identitySeen.add(lower);
        (this.identityHeaders ??= []).push(lower);
      }
    }
  }

  // A method, not an arrow property: no closure per request.
  header(lowercaseName: string): string | undefined {
    return lowercaseName === this.apiKeyHeader ? this.apiKey : lowercaseName === "authorization" ? this.authorization : undefined;
  }
}

function denyMetadata(outcome: DenyOutcome): MetadataEntry[] {
  const metadata: MetadataEntry[] = [["code", outcome.code]];
  if (outcome.keyId !== undefined) metadata.push(["key_id", outcome.keyId]);
  if (outcome.tenantId !== undefined) metadata.push(["tenant_id", outcome.tenantId]);
  return metadata;
}

function denied(outcome: DenyOutcome): CheckDeny {
  return {
    allowed: false,
    rpcCode: RPC_CODE[outcome.status],
    message: outcome.message,
    status: outcome.status,
    headers: outcome.headers,
    body: outcome.body,
    metadata: denyMetadata(outcome),
  };
}

function sharedDeny(outcome: DenyOutcome): CheckDeny {
  return Object.freeze({ ...denied(outcome), shared: true as const });
}

// The same for every request without a credential, and every unknown key.
const MISSING = sharedDeny(missingCredential());
const INVALID = sharedDeny(invalidCredential());

/** The one decision behind both registrations of Check. */
export function createCheckDecider(options: ExtAuthzOptions): CheckDecider {
  const { verifier, credential, removeCredential, clock } = options;

  function allowed(outcome: AllowOutcome, view: RequestView, credentialHeader: string): CheckAllow {
    const set: Header[] = [];
    // Envoy applies headers_to_remove after the headers it sets, so a name we set must
    // never be listed for removal; an identity header we leave unset (no scopes) is.
    const remove = removeCredential ? [credentialHeader] : [];
    for (const header of outcome.upstreamHeaders) {
      if (header[1] === "") remove.push(header[0]);
      else set.push(header);
    }
    if (view.identityHeaders !== undefined) {
      // The identity names are distinct, so only a name set or listed so far can repeat one.
      const taken = new Set(remove);
      for (const header of set) taken.add(header[0]);
      for (const name of view.identityHeaders) if (!taken.has(name)) remove.push(name);
    }
    const { keyId, tenantId, scopes } = outcome.identity;
    return {
      allowed: true,
      headers: set,
      headersToRemove: remove,
      responseHeaders: outcome.responseHeaders,
      metadata: [
        ["key_id", keyId],
        ["tenant_id", tenantId],
        ["scopes", scopes],
      ],
    };
  }

  // An allow without client x-keyward-* headers to strip depends only on the
  // key record and which header held the key, but for a rate-limited key's
  // x-ratelimit-* headers: built once per record (a changed key is a new
  // record object, so entries never go stale), with those headers added per call.
  const sharedAllows = new WeakMap<KeyOf<Decision>, CheckAllow>();
  const sharedBearerAllows = new WeakMap<KeyOf<Decision>, CheckAllow>();

  const respond = (decision: Decision, view: RequestView, credentialHeader: string): CheckResult => {
    const record = decision.key;
    if (record === null) return INVALID;
    if (decision.code === "valid" && view.identityHeaders === undefined) {
      const cache = credentialHeader === "authorization" ? sharedBearerAllows : sharedAllows;
      let shared = cache.get(record);
      if (shared === undefined) {
        // Built without rate-limit headers: they are the only per-call part.
        const outcome = decisionOutcome({ ...decision, rateLimit: null }, clock.now()) as AllowOutcome;
        shared = Object.freeze({ ...allowed(outcome, view, credentialHeader), shared: true as const });
        cache.set(record, shared);
      }
      const rl = decision.rateLimit;
      if (rl === null) return shared;
      return {
        allowed: true,
        headers: shared.headers,
        headersToRemove: shared.headersToRemove,
        responseHeaders: rateLimitHeaders(rl.limit, rl.remaining, rl.resetAt, clock.now()),
        metadata: shared.metadata,
        base: shared,
      };
    }
    const outcome = decisionOutcome(decision, clock.now());
    return outcome.allowed ? allowed(outcome, view, credentialHeader) : denied(outcome);
  };

  // A route's required_scopes is one string in Envoy's config, sent with every
  // Check: the last one parsed is kept (frozen, as the verifier only reads it).
  let lastRaw: string | undefined;
  let lastScopes: readonly string[] = Object.freeze([]);
  const requiredScopesOf = (raw: string | undefined): readonly string[] => {
    if (raw !== lastRaw) {
      lastScopes = Object.freeze(parseRequiredScopes(raw));
      lastRaw = raw;
    }
    return lastScopes;
  };

  const fail = (error: unknown): CheckResult => {
    options.onError?.(error);
    return denied(failureOutcome(error));
  };

  return (input) => {
    const view = new RequestView(credential.apiKeyHeader, input);
    const found = findCredential(view, credential);
    if (!found) return MISSING;
    const scopes = requiredScopesOf(input.requiredScopes);
    let decision: Decision | Promise<Decision>;
    try {
      decision = verifier.verify(found.key, scopes);
    } catch (error) {
      return fail(error);
    }
    // A cache hit stays synchronous: no promise on the hot path.
    if (decision instanceof Promise) return decision.then((d) => respond(d, view, found.header), fail);
    return respond(decision, view, found.header);
  };
}

function headerOption(header: Header): HeaderValueOption {
  return create(HeaderValueOptionSchema, { header: { key: header[0], value: header[1] }, appendAction: OVERWRITE });
}

/** google.protobuf.Struct is a JsonObject in protobuf-es. */
function metadata(entries: readonly MetadataEntry[]): JsonObject {
  const out: JsonObject = {};
  for (const [name, value] of entries) out[name] = typeof value === "string" ? value : [...value];
  return out;
}

/** The CheckResponse message for a result (the Connect router's path; check-codec.ts encodes the same). */
export function checkResponseOf(result: CheckResult): CheckResponse {
  if (!result.allowed) {
    return create(CheckResponseSchema, {
      status: { code: result.rpcCode, message: result.message },
      httpResponse: {
        case: "deniedResponse",
        value: { status: { code: result.status as StatusCode }, headers: result.headers.map(headerOption), body: result.body },
      },
      dynamicMetadata: metadata(result.metadata),
    });
  }
  return create(CheckResponseSchema, {
    status: { code: 0 },
    httpResponse: {
      case: "okResponse",
      value: {
        headers: result.headers.map(headerOption),
        headersToRemove: [...result.headersToRemove],
        responseHeadersToAdd: result.responseHeaders.map(headerOption),
      },
    },
    dynamicMetadata: metadata(result.metadata),
  });
}

/** Check over protobuf-es messages. */
export function createCheckHandler(options: ExtAuthzOptions): CheckHandler {
  const decide = createCheckDecider(options);
  return (request) => {
    const result = decide(checkInputOf(request));
    return result instanceof Promise ? result.then(checkResponseOf) : checkResponseOf(result);
  };
}

/** Check on the lean gRPC path: the same decision, with the hand-written codec. */
export function createCheckMethod(options: ExtAuthzOptions): UnaryMethod {
  const decide = createCheckDecider(options);
  // Only headers RequestView can look at become strings.
  const filter = createHeaderFilter([options.credential.apiKeyHeader, "authorization"], [IDENTITY_HEADER_PREFIX]);
  return lean<CheckInput, CheckResult>({
    path: `/${Authorization.typeName}/${Authorization.method.check.name}`,
    decode: (bytes) => decodeCheckRequest(bytes, filter),
    handle: decide,
    encode: encodeCheckResponse,
    encodeFrame: encodeCheckResponseFrame,
  });
}

/** The Connect-router registration (gRPC-Web, Connect, gRPC via connect-node). */
export function createAuthorizationService(check: CheckHandler): ServiceImpl<typeof Authorization> {
  return { check: (request) => check(request) };
}
