// Opaque page tokens: base64url JSON carrying the keyset cursor and the query
// it belongs to, so a token cannot be replayed against another listing.
import { invalidArgument } from "./errors.js";
import { LIMITS } from "./validation.js";

export function encodePageToken(scope: string, cursor: Record<string, string | number>): string {
  return Buffer.from(JSON.stringify({ q: scope, c: cursor }), "utf8").toString("base64url");
}

export function decodePageToken(token: string, scope: string): Record<string, unknown> | undefined {
  if (token === "") return undefined;
  const bad = () => invalidArgument("page_token is invalid; pass the next_page_token of the previous page unchanged");
  if (token.length > LIMITS.pageTokenLength || !/^[A-Za-z0-9_-]+$/.test(token)) throw bad();
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
  } catch {
    throw bad();
  }
  if (typeof parsed !== "object" || parsed === null) throw bad();
  const { q, c } = parsed as { q?: unknown; c?: unknown };
  if (q !== scope) throw invalidArgument("page_token belongs to a different query (tenant or filters changed)");
  if (typeof c !== "object" || c === null) throw bad();
  return c as Record<string, unknown>;
}
