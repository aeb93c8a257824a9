// envoy.service.auth.v3.Authorization/Check: wire ⇄ domain only. The decision
// is the verifier's (the same call as Verify: one cache, one rate limiter, one
// usage counter); the HTTP shape is authz-response.ts's. A denial is a normal
// CheckResponse with denied_response, never an RPC error, so Envoy shows the
// client our status, headers and body whatever failure_mode_allow says.
import { create, type JsonObject } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import type { Clock } from "../core/model.js";
import type { Decision, Verifier } from "../core/verifier.js";
import {
  HeaderValueOption_HeaderAppendAction,
  HeaderValueOptionSchema,
  type HeaderValueOption,
} from "../gen/envoy/config/core/v3/base_pb.js";
import type { AttributeContext_HttpRequest } from "../gen/envoy/service/auth/v3/attribute_context_pb.js";
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
  IDENTITY_HEADER_PREFIX,
  missingCredential,
  parseRequiredScopes,
  REQUIRED_SCOPES_PARAM,
  type AuthzOutcome,
  type CredentialOptions,
  type DenyOutcome,
  type Header,
} from "./authz-response.js";

export interface ExtAuthzOptions {
  verifier: Pick<Verifier, "verify">;
  credential: CredentialOptions;
  /** Put the credential header in headers_to_remove so the upstream never sees the key. */
  removeCredential: boolean;
  clock: Clock;
  /** A decision that failed (storage down, a bug); the request is denied regardless. */
  onError?: (error: unknown) => void;
}

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
const decoder = new TextDecoder();

interface RequestView {
  get(lowercaseName: string): string | undefined;
  /** Lowercase names of every x-keyward-* header the client sent. */
  identityHeaders: string[];
}

/**
 * Envoy sends `headers` (lowercase keys, repeats merged with ",") or, with
 * encode_raw_headers, `header_map` (key + raw_value). Both are read, names
 * compared lowercase, repeats joined with "," as Envoy does.
 */
function viewRequest(http: AttributeContext_HttpRequest | undefined): RequestView {
  const headers = new Map<string, string>();
  const identityHeaders: string[] = [];
  const add = (name: string, value: string) => {
    const lower = name.toLowerCase();
    const previous = headers.get(lower);
    headers.set(lower, previous === undefined ? value : `${previous},${value}`);
    if (previous === undefined && lower.startsWith(IDENTITY_HEADER_PREFIX)) identityHeaders.push(lower);
  };
  if (http) {
    for (const name in http.headers) add(name, http.headers[name]!);
    for (const h of http.headerMap?.headers ?? []) add(h.key, h.value !== "" ? h.value : decoder.decode(h.rawValue));
  }
  return { get: (name) => headers.get(name), identityHeaders };
}

function headerOption(header: Header): HeaderValueOption {
  return create(HeaderValueOptionSchema, { header: { key: header[0], value: header[1] }, appendAction: OVERWRITE });
}

/** google.protobuf.Struct is a JsonObject in protobuf-es; unset entries are left out. */
function metadata(entries: Record<string, string | readonly string[] | undefined>): JsonObject {
  const out: JsonObject = {};
  for (const [name, value] of Object.entries(entries)) if (value !== undefined) out[name] = typeof value === "string" ? value : [...value];
  return out;
}

function denied(outcome: DenyOutcome): CheckResponse {
  return create(CheckResponseSchema, {
    status: { code: RPC_CODE[outcome.status], message: outcome.message },
    httpResponse: {
      case: "deniedResponse",
      value: { status: { code: outcome.status as StatusCode }, headers: outcome.headers.map(headerOption), body: outcome.body },
    },
    dynamicMetadata: metadata({ code: outcome.code, key_id: outcome.keyId, tenant_id: outcome.tenantId }),
  });
}

export function createCheckHandler(options: ExtAuthzOptions): CheckHandler {
  const { verifier, credential, removeCredential, clock } = options;

  function respond(outcome: AuthzOutcome, request: RequestView, credentialHeader: string): CheckResponse {
    if (!outcome.allowed) return denied(outcome);
    const set: HeaderValueOption[] = [];
    const setNames = new Set<string>();
    // Envoy applies headers_to_remove after the headers it sets, so a name we set must
    // never be listed for removal; an identity header we leave unset (no scopes) is.
    const remove = removeCredential ? [credentialHeader] : [];
    for (const header of outcome.upstreamHeaders) {
      if (header[1] === "") {
        remove.push(header[0]);
      } else {
        set.push(headerOption(header));
        setNames.add(header[0]);
      }
    }
    for (const name of request.identityHeaders) if (!setNames.has(name) && !remove.includes(name)) remove.push(name);
    const { keyId, tenantId, scopes } = outcome.identity;
    return create(CheckResponseSchema, {
      status: { code: 0 },
      httpResponse: {
        case: "okResponse",
        value: { headers: set, headersToRemove: remove, responseHeadersToAdd: outcome.responseHeaders.map(headerOption) },
      },
      dynamicMetadata: metadata({ key_id: keyId, tenant_id: tenantId, scopes }),
    });
  }

  const fail = (error: unknown): CheckResponse => {
    options.onError?.(error);
    return denied(failureOutcome(error));
  };

  return (request) => {
    const attributes = request.attributes;
    const view = viewRequest(attributes?.request?.http);
    const found = findCredential(view.get, credential);
    if (!found) return denied(missingCredential());
    const scopes = parseRequiredScopes(attributes?.contextExtensions[REQUIRED_SCOPES_PARAM]);
    let decision: Decision | Promise<Decision>;
    try {
      decision = verifier.verify(found.key, scopes);
    } catch (error) {
      return fail(error);
    }
    // A cache hit stays synchronous: no promise on the hot path.
    if (decision instanceof Promise) {
      return decision.then((d) => respond(decisionOutcome(d, clock.now()), view, found.header), fail);
    }
    return respond(decisionOutcome(decision, clock.now()), view, found.header);
  };
}

/** The Connect-router registration (gRPC-Web, Connect, gRPC via connect-node). */
export function createAuthorizationService(check: CheckHandler): ServiceImpl<typeof Authorization> {
  return { check: (request) => check(request) };
}
