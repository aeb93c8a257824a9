// Per-call context shared by the management services and the RPC interceptor:
// who called (set once authenticated, read by the log line) and the ids that
// tie a call to its trace.
import { randomUUID } from "node:crypto";
import { createContextKey, type HandlerContext } from "@connectrpc/connect";
import type { Authenticator, Principal } from "../core/auth.js";

export const principalKey = createContextKey<Principal | undefined>(undefined, { description: "keyward principal" });

/** Authenticates the caller from `authorization` and remembers it for the call's log line. */
export async function callerOf(auth: Authenticator, ctx: HandlerContext): Promise<Principal> {
  const principal = await auth.authenticate(ctx.requestHeader.get("authorization"));
  ctx.values.set(principalKey, principal);
  return principal;
}

const REQUEST_ID_RE = /^[\w.:-]{1,128}$/;
const TRACEPARENT_RE = /^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$/;

export interface CallIds {
  requestId: string;
  traceId?: string;
  spanId?: string;
}

/** x-request-id when the caller (e.g. Envoy) sent a sane one, else a new one; W3C traceparent ids. */
export function callIds(get: (name: string) => string | null | undefined): CallIds {
  const given = get("x-request-id");
  const ids: CallIds = { requestId: given && REQUEST_ID_RE.test(given) ? given : randomUUID() };
  const traceparent = get("traceparent");
  const m = traceparent ? TRACEPARENT_RE.exec(traceparent) : null;
  if (m) {
    ids.traceId = m[1];
    ids.spanId = m[2];
  }
  return ids;
}
