// Forward-auth over plain HTTP: `/v1/authz` answers the same decision as
// ext_authz Check for proxies that ask with an HTTP subrequest (nginx
// auth_request, Traefik ForwardAuth, Envoy's HTTP ext_authz with path_prefix).
// 200 + x-keyward-* on allow; 401/403/429/503 with a JSON body on deny.
// Required scopes come from the auth URL's query (`?required_scopes=a,b`), set
// in the proxy's configuration. The response carries only what keyward
// decided: client-sent x-keyward-* headers are never echoed.
import type { IncomingHttpHeaders } from "node:http";
import type { Clock } from "../core/model.js";
import type { Decision, Verifier } from "../core/verifier.js";
import {
  decisionOutcome,
  failureOutcome,
  findCredential,
  missingCredential,
  parseRequiredScopes,
  REQUIRED_SCOPES_PARAM,
  type AuthzOutcome,
  type Header,
} from "./authz-response.js";
import type { CredentialOptions } from "./authz-response.js";

export const FORWARD_AUTH_PATH = "/v1/authz";

export interface ForwardAuthOptions {
  verifier: Pick<Verifier, "verify">;
  credential: CredentialOptions;
  clock: Clock;
  /** A decision that failed (storage down, a bug); the request is denied regardless. */
  onError?: (error: unknown) => void;
}

/** The parts of node's http/http2 request and response this handler touches. */
export interface PlainRequest {
  method?: string | undefined;
  url?: string | undefined;
  headers: IncomingHttpHeaders;
}

export interface PlainResponse {
  writeHead(status: number, headers: Record<string, string>): unknown;
  end(body: string): unknown;
}

export type PlainHandler = (req: PlainRequest, res: PlainResponse) => void;

/** True for /v1/authz and /v1/authz/... (Envoy's HTTP ext_authz appends the original path). */
export function isForwardAuthPath(path: string): boolean {
  return path === FORWARD_AUTH_PATH || path.startsWith(`${FORWARD_AUTH_PATH}/`);
}

function headerOf(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  // Repeats are joined as a proxy would merge them: an ambiguous key is then malformed.
  return Array.isArray(value) ? value.join(",") : value;
}

function requiredScopes(url: string | undefined): string[] {
  const q = url?.indexOf("?") ?? -1;
  if (q === -1) return [];
  return parseRequiredScopes(new URLSearchParams(url!.slice(q + 1)).getAll(REQUIRED_SCOPES_PARAM).join(","));
}

function send(req: PlainRequest, res: PlainResponse, outcome: AuthzOutcome): void {
  const headers: Record<string, string> = { "cache-control": "no-store" };
  const put = (list: readonly Header[]) => {
    for (const [name, value] of list) headers[name] = value;
  };
  let body = "";
  if (outcome.allowed) {
    put(outcome.upstreamHeaders);
    put(outcome.responseHeaders);
  } else {
    put(outcome.headers);
    body = outcome.body;
  }
  headers["content-length"] = String(req.method === "HEAD" ? 0 : Buffer.byteLength(body));
  res.writeHead(outcome.status, headers);
  res.end(req.method === "HEAD" ? "" : body);
}

export function createForwardAuthHandler(options: ForwardAuthOptions): PlainHandler {
  const { verifier, credential, clock } = options;
  return (req, res) => {
    const found = findCredential({ header: (name) => headerOf(req.headers, name) }, credential);
    if (!found) return send(req, res, missingCredential());
    const fail = (error: unknown) => {
      options.onError?.(error);
      send(req, res, failureOutcome(error));
    };
    let decision: Decision | Promise<Decision>;
    try {
      decision = verifier.verify(found.key, requiredScopes(req.url));
    } catch (error) {
      return fail(error);
    }
    if (decision instanceof Promise) {
      // A response that cannot be written (client gone) must not become an unhandled rejection.
      decision.then((d) => send(req, res, decisionOutcome(d, clock.now())), fail).catch((error: unknown) => options.onError?.(error));
    } else {
      send(req, res, decisionOutcome(decision, clock.now()));
    }
  };
}
