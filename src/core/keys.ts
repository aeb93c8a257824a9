// Key management: issue, revoke, read, list, update — behind tenant walls.
// Every change is durable (committed with its audit event) before it returns,
// and this instance's cache sees it at once.
import { requireAdmin, tenantWall, type Principal } from "./auth.js";
import { invalidArgument, KeywardError, notFound } from "./errors.js";
import type { KeyCache } from "./key-cache.js";
import { DEFAULT_PREFIX, generateKey, isValidPrefix, MAX_PREFIX_LENGTH, type KeyHasher } from "./key-format.js";
import { randomBase62 } from "./key-format.js";
import type { AuditInput, Clock, KeyPatch, KeyRecord, KeyStore } from "./model.js";
import { decodePageToken, encodePageToken } from "./page-token.js";
import * as v from "./validation.js";

export const DEFAULT_WINDOW_SECONDS = 3600;

export interface IssueInput {
  tenantId: string;
  name: string;
  nameAr: string;
  scopes: readonly string[];
  rateLimit: number;
  rateLimitWindowSeconds: number;
  expiresAt: Date | null;
  metadata: Record<string, string>;
  prefix: string;
}

export interface ListInput {
  tenantId: string;
  pageSize: number;
  pageToken: string;
  includeRevoked: boolean;
}

/** UpdateKey's flat fields; only those named in `paths` are applied. */
export type UpdateInput = Required<KeyPatch>;

export const UPDATE_PATHS = [
  "name",
  "name_ar",
  "scopes",
  "rate_limit",
  "rate_limit_window_seconds",
  "expires_at",
  "enabled",
  "metadata",
] as const;
export type UpdatePath = (typeof UPDATE_PATHS)[number];

export interface KeyManagerOptions {
  store: KeyStore;
  /** This instance's verification cache, told of every change at once. */
  cache: Pick<KeyCache, "set">;
  hasher: KeyHasher;
  clock: Clock;
}

export interface KeyManager {
  issue(principal: Principal, input: IssueInput): Promise<{ key: string; record: KeyRecord }>;
  revoke(principal: Principal, id: string, reason: string): Promise<KeyRecord>;
  get(principal: Principal, id: string): Promise<KeyRecord>;
  list(principal: Principal, input: ListInput): Promise<{ records: KeyRecord[]; nextPageToken: string }>;
  update(principal: Principal, id: string, input: UpdateInput, paths: readonly string[]): Promise<KeyRecord>;
}

/** The tenant a call acts on: the admin names it; a tenant admin may only name its own. */
export function resolveTenant(principal: Principal, requested: string): string {
  if (principal.kind === "admin") return v.tenantId(requested);
  if (requested !== "" && requested !== principal.tenantId) {
    // Another tenant's existence is not revealed.
    throw notFound(`tenant ${v.quote(v.text("tenant_id", requested, v.LIMITS.tenantIdLength))} not found`);
  }
  return principal.tenantId;
}

export function createKeyManager(options: KeyManagerOptions): KeyManager {
  const { store, cache, hasher, clock } = options;

  function audit(principal: Principal, action: string, details: Record<string, unknown>): AuditInput {
    return { actor: principal.actor, action, details, at: new Date(clock.now()) };
  }

  const missing = (id: string) => notFound(`key ${v.quote(id)} not found`);

  return {
    async issue(principal, input) {
      requireAdmin(principal);
      const tenantId = resolveTenant(principal, input.tenantId);
      const prefix = input.prefix === "" ? DEFAULT_PREFIX : input.prefix;
      if (!isValidPrefix(prefix)) {
        throw invalidArgument(
          `prefix must be at most ${MAX_PREFIX_LENGTH} characters of lowercase letters and digits in '_'-separated words (e.g. "sk_live")`,
        );
      }
      const now = clock.now();
      if (input.expiresAt !== null && input.expiresAt.getTime() <= now) {
        throw invalidArgument("expires_at must be in the future");
      }
      const { key, displayPrefix } = generateKey(prefix);
      const at = new Date(now);
      const record: KeyRecord = {
        id: `key_${randomBase62(22)}`,
        tenantId,
        name: v.text("name", input.name),
        nameAr: v.text("name_ar", input.nameAr),
        prefix: displayPrefix,
        hash: hasher(key),
        scopes: v.scopes(input.scopes),
        rateLimit: input.rateLimit,
        rateLimitWindowSeconds: v.windowSeconds(input.rateLimitWindowSeconds) || DEFAULT_WINDOW_SECONDS,
        expiresAt: input.expiresAt,
        createdAt: at,
        updatedAt: at,
        lastUsedAt: null,
        requestCount: 0,
        enabled: true,
        revokedAt: null,
        revokedReason: "",
        createdBy: principal.actor,
        metadata: v.metadata(input.metadata),
      };
      await store.insert(record, {
        actor: principal.actor,
        action: "key.issue",
        details: { name: record.name, scopes: record.scopes, prefix: record.prefix },
        at,
      });
      cache.set(record);
      return { key, record };
    },

    async revoke(principal, id, reason) {
      requireAdmin(principal);
      v.id(id);
      v.text("reason", reason, v.LIMITS.reasonLength);
      const record = await store.revoke(id, tenantWall(principal), reason, audit(principal, "key.revoke", { reason }));
      if (!record) throw missing(id);
      cache.set(record);
      return record;
    },

    async get(principal, id) {
      requireAdmin(principal);
      v.id(id);
      const record = await store.findById(id, tenantWall(principal));
      if (!record) throw missing(id);
      return record;
    },

    async list(principal, input) {
      requireAdmin(principal);
      const tenantId = resolveTenant(principal, input.tenantId);
      const limit = v.pageSize(input.pageSize);
      const scope = `keys:${tenantId}:${input.includeRevoked ? 1 : 0}`;
      const cursor = decodePageToken(input.pageToken, scope);
      let after: { createdAt: Date; id: string } | undefined;
      if (cursor) {
        if (typeof cursor.t !== "number" || typeof cursor.i !== "string") {
          throw invalidArgument("page_token is invalid; pass the next_page_token of the previous page unchanged");
        }
        after = { createdAt: new Date(cursor.t), id: cursor.i };
      }
      // One extra row tells whether another page exists.
      const rows = await store.list({ tenantId, limit: limit + 1, after, includeRevoked: input.includeRevoked });
      const records = rows.slice(0, limit);
      const last = records.at(-1);
      const nextPageToken =
        rows.length > limit && last ? encodePageToken(scope, { t: last.createdAt.getTime(), i: last.id }) : "";
      return { records, nextPageToken };
    },

    async update(principal, id, input, paths) {
      requireAdmin(principal);
      v.id(id);
      if (paths.length === 0) {
        throw invalidArgument(`update_mask must name the fields to change (${UPDATE_PATHS.join(", ")})`);
      }
      const patch: KeyPatch = {};
      for (const path of paths) {
        switch (path as UpdatePath) {
          case "name":
            patch.name = v.text("name", input.name);
            break;
          case "name_ar":
            patch.nameAr = v.text("name_ar", input.nameAr);
            break;
          case "scopes":
            patch.scopes = v.scopes(input.scopes);
            break;
          case "rate_limit":
            patch.rateLimit = input.rateLimit;
            break;
          case "rate_limit_window_seconds":
            patch.rateLimitWindowSeconds = v.windowSeconds(input.rateLimitWindowSeconds) || DEFAULT_WINDOW_SECONDS;
            break;
          case "expires_at":
            patch.expiresAt = input.expiresAt;
            break;
          case "enabled":
            patch.enabled = input.enabled;
            break;
          case "metadata":
            patch.metadata = v.metadata(input.metadata);
            break;
          default:
            throw invalidArgument(
              `update_mask path ${v.quote(v.text("update_mask", path, 256))} is not updatable (use ${UPDATE_PATHS.join(", ")})`,
            );
        }
      }
      const wall = tenantWall(principal);
      const current = await store.findById(id, wall);
      if (!current) throw missing(id);
      if (current.revokedAt !== null) {
        throw new KeywardError("failed_precondition", `key ${v.quote(id)} is revoked and can no longer be changed`);
      }
      const record = await store.update(id, wall, patch, audit(principal, "key.update", { fields: [...paths] }));
      if (!record) throw missing(id);
      cache.set(record);
      return record;
    },
  };
}
