// What an authorization decision looks like over HTTP, independent of the wire
// that carries it: ext_authz Check (src/transport/ext-authz.ts) and
// forward-auth (src/transport/forward-auth.ts) both render these outcomes, so
// status codes, headers and bodies cannot drift apart. Pure: no I/O, no
// generated types.
import { parseBearer } from "../core/auth.js";
import { KeywardError } from "../core/errors.js";
import type { Decision } from "../core/verifier.js";

/** Identity headers set for the upstream on allow; always overwritten, never taken from the client. */
export const KEY_ID_HEADER = "x-keyward-key-id";
export const TENANT_ID_HEADER = "x-keyward-tenant-id";
export const SCOPES_HEADER = "x-keyward-scopes";
export const IDENTITY_HEADER_PREFIX = "x-keyward-";

/** Required scopes arrive in this ext_authz context extension and forward-auth query parameter. */
export const REQUIRED_SCOPES_PARAM = "required_scopes";

export interface CredentialOptions {
  /** Lowercase name of the header carrying the raw key (default x-api-key). */
  apiKeyHeader: string;
  /** Also accept `authorization: Bearer <key>`. */
  acceptBearer: boolean;
}

export interface Credential {
  key: string;
  /** Lowercase name of the header the key came from (for removal before upstream). */
  header: string;
}

/** Looks a header up by lowercase name; repeated headers arrive joined with ",". */
export interface HeaderLookup {
  header(lowercaseName: string): string | undefined;
}

/**
 * The API-key header wins over `authorization`, so a request may carry the key
 * in x-api-key and an unrelated bearer token for the upstream.
 */
export function findCredential(headers: HeaderLookup, options: CredentialOptions): Credential | undefined {
  const raw = headers.header(options.apiKeyHeader)?.trim();
  if (raw) return { key: raw, header: options.apiKeyHeader };
  if (options.acceptBearer) {
    const bearer = parseBearer(headers.header("authorization"));
    if (bearer) return { key: bearer, header: "authorization" };
  }
  return undefined;
}

/** "a,b", "a b" or both; empty entries dropped, duplicates removed, order kept. */
export function parseRequiredScopes(raw: string | undefined): string[] {
  if (!raw) return [];
  const out: string[] = [];
  for (const scope of raw.split(/[\s,]+/)) if (scope !== "" && !out.includes(scope)) out.push(scope);
  return out;
}

export type DenyCode =
  | "missing_key"
  | "invalid_key"
  | "key_revoked"
  | "key_disabled"
  | "key_expired"
  | "insufficient_scope"
  | "rate_limited"
  | "unavailable"
  | "internal";

export type Header = readonly [name: string, value: string];

export interface Identity {
  keyId: string;
  tenantId: string;
  scopes: readonly string[];
}

export interface AllowOutcome {
  allowed: true;
  status: 200;
  identity: Identity;
  /** The three identity headers, in a fixed order; x-keyward-scopes is "" for a key without scopes. */
  upstreamHeaders: readonly Header[];
  /** x-ratelimit-* for the client's response; empty when the key has no rate limit. */
  responseHeaders: readonly Header[];
}

export interface DenyOutcome {
  allowed: false;
  status: 401 | 403 | 429 | 500 | 503;
  code: DenyCode;
  message: string;
  /** Response headers for the client, content-type first. */
  headers: readonly Header[];
  /** `{"error": message, "code": code}`; never contains the key. */
  body: string;
  /** Known when the key exists (for access logs), never sent to the client as a header. */
  keyId: string | undefined;
  tenantId: string | undefined;
}

export type AuthzOutcome = AllowOutcome | DenyOutcome;

const REALM = `Bearer realm="keyward"`;
const JSON_TYPE: Header = ["content-type", "application/json"];

function deny(status: DenyOutcome["status"], code: DenyCode, message: string, extra: readonly Header[] = [], record?: Decision["key"]): DenyOutcome {
  return {
    allowed: false,
    status,
    code,
    message,
    headers: [JSON_TYPE, ...extra],
    body: JSON.stringify({ error: message, code }),
    keyId: record?.id,
    tenantId: record?.tenantId,
  };
}

const invalidToken = (description: string): Header => [
  "www-authenticate",
  `${REALM}, error="invalid_token", error_description="${description}"`,
];

// The outcomes that depend on nothing but the code are built once.
// RFC 6750 §3.1: a request without credentials gets the challenge but no error code.
const MISSING = deny(401, "missing_key", "API key required", [["www-authenticate", REALM]]);
const INVALID = deny(401, "invalid_key", "API key is not valid", [invalidToken("API key is not valid")]);
const UNAVAILABLE = deny(503, "unavailable", "authorization is temporarily unavailable", [["retry-after", "1"]]);
const INTERNAL = deny(500, "internal", "internal error");
const KEY_STATE: Record<"revoked" | "disabled" | "expired", { code: DenyCode; message: string }> = {
  revoked: { code: "key_revoked", message: "API key has been revoked" },
  disabled: { code: "key_disabled", message: "API key is disabled" },
  expired: { code: "key_expired", message: "API key has expired" },
};

export function missingCredential(): DenyOutcome {
  return MISSING;
}

/** The outcome for a key keyward does not know (malformed or unknown). */
export function invalidCredential(): DenyOutcome {
  return INVALID;
}

/** A failed decision (storage unreachable, a bug): denied either way, fail closed. */
export function failureOutcome(error: unknown): DenyOutcome {
  return error instanceof KeywardError && error.kind === "unavailable" ? UNAVAILABLE : INTERNAL;
}

/** Whole seconds from now until `at`, never negative. */
export function secondsUntil(at: number, now: number): number {
  return Math.max(0, Math.ceil((at - now) / 1000));
}

// Header values must stay printable ASCII; required scopes come from proxy
// configuration (or a query string) and may hold anything.
const QUOTABLE_RE = /^[\x21\x23-\x5b\x5d-\x7e]+$/;

export function decisionOutcome(decision: Decision, now: number): AuthzOutcome {
  const record = decision.key;
  switch (decision.code) {
    case "valid": {
      const rl = decision.rateLimit;
      const scopes = record!.scopes;
      return {
        allowed: true,
        status: 200,
        identity: { keyId: record!.id, tenantId: record!.tenantId, scopes },
        upstreamHeaders: [
          [KEY_ID_HEADER, record!.id],
          [TENANT_ID_HEADER, record!.tenantId],
          [SCOPES_HEADER, scopes.join(",")],
        ],
        responseHeaders: rl ? rateLimitHeaders(rl.limit, rl.remaining, rl.resetAt, now) : [],
      };
    }
    case "not_found":
      return INVALID;
    case "revoked":
    case "disabled":
    case "expired": {
      const { code, message } = KEY_STATE[decision.code];
      return deny(401, code, message, [invalidToken(message)], record);
    }
    case "insufficient_scope": {
      const missing = decision.missingScopes;
      const quotable = missing.every((s) => QUOTABLE_RE.test(s));
      const challenge = `${REALM}, error="insufficient_scope"${quotable ? `, scope="${missing.join(" ")}"` : ""}`;
      return deny(403, "insufficient_scope", `API key lacks required scope: ${missing.join(", ")}`, [["www-authenticate", challenge]], record);
    }
    case "rate_limited": {
      const rl = decision.rateLimit!;
      const retryAfter = Math.max(1, secondsUntil(rl.resetAt, now));
      return deny(
        429,
        "rate_limited",
        "rate limit exceeded",
        [["retry-after", String(retryAfter)], ...rateLimitHeaders(rl.limit, rl.remaining, rl.resetAt, now)],
        record,
      );
    }
  }
}

/** x-ratelimit-reset is in seconds from now, like retry-after. */
export function rateLimitHeaders(limit: number, remaining: number, resetAt: number, now: number): Header[] {
  return [
    ["x-ratelimit-limit", String(limit)],
    ["x-ratelimit-remaining", String(remaining)],
    ["x-ratelimit-reset", String(secondsUntil(resetAt, now))],
  ];
}
