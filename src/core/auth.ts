// Who is calling a management RPC. Credentials arrive as `authorization:
// Bearer <credential>`: the admin token (every tenant) or a keyward key. Only
// the server decides identity; no caller-supplied identity header is read.
import { createHash, timingSafeEqual } from "node:crypto";
import { permissionDenied, unauthenticated } from "./errors.js";
import type { Verifier } from "./verifier.js";

export const ADMIN_SCOPE = "keyward:admin";

export type Principal =
  // "admin": the admin token over the network; "cli": the keyward command line, straight against the database.
  | { kind: "admin"; actor: "admin" | "cli" }
  | { kind: "key"; actor: string; keyId: string; tenantId: string; isAdmin: boolean };

export interface AuthenticatorOptions {
  /** Unset: only keys with the admin scope can manage. */
  adminToken?: string;
  verifier: Pick<Verifier, "authenticate">;
}

export interface Authenticator {
  /** Resolves the caller or throws UNAUTHENTICATED. */
  authenticate(authorization: string | null | undefined): Promise<Principal>;
}

const ADMIN: Principal = Object.freeze({ kind: "admin", actor: "admin" });
const digest = (s: string) => createHash("sha256").update(s).digest();

export function parseBearer(authorization: string | null | undefined): string | undefined {
  if (!authorization) return undefined;
  const match = /^\s*bearer\s+(\S+)\s*$/i.exec(authorization);
  return match?.[1];
}

export function createAuthenticator(options: AuthenticatorOptions): Authenticator {
  // Comparing fixed-length digests keeps the comparison constant-time whatever the input length.
  const adminDigest = options.adminToken ? digest(options.adminToken) : undefined;
  return {
    async authenticate(authorization) {
      const credential = parseBearer(authorization);
      if (credential === undefined) {
        throw unauthenticated("missing credential: send 'authorization: Bearer <admin token or key>'");
      }
      if (adminDigest && timingSafeEqual(digest(credential), adminDigest)) return ADMIN;
      const record = await options.verifier.authenticate(credential);
      if (!record) throw unauthenticated("invalid credential");
      return {
        kind: "key",
        actor: record.id,
        keyId: record.id,
        tenantId: record.tenantId,
        isAdmin: record.scopes.includes(ADMIN_SCOPE),
      };
    },
  };
}

export function isAdmin(principal: Principal): boolean {
  return principal.kind === "admin" || principal.isAdmin;
}

export function requireAdmin(principal: Principal): void {
  if (!isAdmin(principal)) throw permissionDenied(`this call needs the '${ADMIN_SCOPE}' scope`);
}

/**
 * The tenant wall for queries by id: undefined (no wall) only for the global
 * admin; a key sees its own tenant alone.
 */
export function tenantWall(principal: Principal): string | undefined {
  return principal.kind === "admin" ? undefined : principal.tenantId;
}
