// KeyStore over MikroORM. Each call works on its own EntityManager fork; each
// mutation commits the change, its audit event and (on PostgreSQL) its change
// notification in one transaction.

import type { FilterQuery } from "@mikro-orm/core";
import type { AuditInput, KeyListQuery, KeyPatch, KeyRecord, KeyStore, UsageDelta } from "../core/model.js";
import { recordAudit } from "./audit-store.js";
import { ApiKeyEntity } from "./entities.js";
import type { SqlEntityManager, SqlOrm } from "./orm-types.js";
import { toKeyRecord } from "./records.js";
import { guarded } from "./storage-errors.js";

const PATCH_FIELDS = [
  "name",
  "nameAr",
  "scopes",
  "rateLimit",
  "rateLimitWindowSeconds",
  "expiresAt",
  "enabled",
  "metadata",
] as const satisfies readonly (keyof KeyPatch)[];

function byId(id: string, tenantId: string | undefined): { id: string; tenantId?: string } {
  return tenantId === undefined ? { id } : { id, tenantId };
}

async function findKey(em: SqlEntityManager, id: string, tenantId: string | undefined): Promise<ApiKeyEntity | null> {
  return em.findOne(ApiKeyEntity, byId(id, tenantId));
}

/** Sums duplicate ids and orders by id, so concurrent batches lock rows in the same order. */
function mergeDeltas(deltas: UsageDelta[]): UsageDelta[] {
  const merged = new Map<string, UsageDelta>();
  for (const delta of deltas) {
    const seen = merged.get(delta.id);
    if (seen === undefined) {
      merged.set(delta.id, { ...delta });
    } else {
      seen.count += delta.count;
      if (delta.lastUsedAt > seen.lastUsedAt) seen.lastUsedAt = delta.lastUsedAt;
    }
  }
  return [...merged.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

export interface KeyStoreOptions {
  /**
   * Announces changed key hashes to other instances; called inside the change's
   * transaction so the announcement commits (or rolls back) with it.
   */
  notifyChanges?: (em: SqlEntityManager, hashes: readonly string[]) => Promise<void>;
  /**
   * Write usage as one UPDATE ... FROM (VALUES ...) per chunk of keys instead
   * of one statement per key: on PostgreSQL a round trip each over the
   * network; on SQLite a native statement each, whose memory piled up until
   * GC (a flush after 100k cache misses left ~100 MiB in the C heap).
   */
  batchedUsage: "postgresql" | "sqlite";
  /**
   * The Verify cache-miss lookup without the ORM: on PostgreSQL one plain
   * parameterised query on the pool (through the ORM the same lookup costs
   * ~4× the CPU, measured 430 vs 117 µs, and a miss is on the request path);
   * on SQLite one statement prepared once (the ORM prepared one per lookup,
   * and their native memory piled up until GC).
   */
  lookupByHash?: (hash: string) => Promise<KeyRecord | null>;
}

// 500 keys × 3 parameters stays below PostgreSQL's 65,535 and SQLite's 32,766 bind parameters.
const USAGE_CHUNK = 500;

// Written by hand so the increment and the max() happen in the database, not
// read-modify-write in JS: concurrent flushes from several instances add up.
function batchedUsageSql(dialect: "postgresql" | "sqlite", rows: number): string {
  if (dialect === "sqlite") {
    // SQLite names VALUES columns column1..3; times are epoch ms there.
    const values = Array.from({ length: rows }, () => "(?, ?, ?)").join(", ");
    return (
      "update api_keys set request_count = request_count + v.n, " +
      "last_used_at = case when last_used_at is null or last_used_at < v.at then v.at else last_used_at end " +
      `from (select column1 as id, column2 as n, column3 as at from (values ${values})) as v where api_keys.id = v.id`
    );
  }
  const values = Array.from({ length: rows }, () => "(?, cast(? as bigint), cast(? as timestamptz))").join(", ");
  return (
    "update api_keys as k set request_count = k.request_count + v.n, " +
    "last_used_at = case when k.last_used_at is null or k.last_used_at < v.at then v.at else k.last_used_at end " +
    `from (values ${values}) as v(id, n, at) where k.id = v.id`
  );
}

export function createKeyStore(orm: SqlOrm, options: KeyStoreOptions): KeyStore {
  const notify = options.notifyChanges ?? (async () => {});
  return {
    findByHash(hash) {
      if (options.lookupByHash) return guarded("key.findByHash", () => options.lookupByHash!(hash));
      return guarded("key.findByHash", async () => {
        const entity = await orm.em.fork().findOne(ApiKeyEntity, { hash });
        return entity ? toKeyRecord(entity) : null;
      });
    },

    findById(id, tenantId) {
      return guarded("key.findById", async () => {
        const entity = await findKey(orm.em.fork(), id, tenantId);
        return entity ? toKeyRecord(entity) : null;
      });
    },

    insert(record: KeyRecord, audit: AuditInput) {
      return guarded("key.insert", () =>
        orm.em.fork().transactional(async (em) => {
          await em.insert(ApiKeyEntity, {
            ...record,
            scopes: [...record.scopes],
            metadata: { ...record.metadata },
          });
          await recordAudit(em, record.tenantId, record.id, audit);
          // Other instances may remember this hash as unknown (negative cache).
          await notify(em, [record.hash]);
        }),
      );
    },

    update(id, tenantId, patch, audit) {
      return guarded("key.update", () =>
        orm.em.fork().transactional(async (em) => {
          const changes: Partial<KeyRecord> = { updatedAt: audit.at };
          for (const field of PATCH_FIELDS) {
            if (patch[field] !== undefined) Object.assign(changes, { [field]: patch[field] });
          }
          const affected = await em.nativeUpdate(ApiKeyEntity, byId(id, tenantId), changes);
          if (affected === 0) return null;
          const entity = await findKey(em, id, tenantId);
          if (entity === null) return null;
          await recordAudit(em, entity.tenantId, entity.id, audit);
          await notify(em, [entity.hash]);
          return toKeyRecord(entity);
        }),
      );
    },

    revoke(id, tenantId, reason, audit) {
      return guarded("key.revoke", () =>
        orm.em.fork().transactional(async (em) => {
          // Conditional update: of two concurrent revokes exactly one matches,
          // so the audit event is written once.
          const affected = await em.nativeUpdate(
            ApiKeyEntity,
            { ...byId(id, tenantId), revokedAt: null },
            { revokedAt: audit.at, revokedReason: reason, updatedAt: audit.at },
          );
          const entity = await findKey(em, id, tenantId);
          if (entity === null) return null;
          if (affected > 0) {
            await recordAudit(em, entity.tenantId, entity.id, audit);
            await notify(em, [entity.hash]);
          }
          return toKeyRecord(entity);
        }),
      );
    },

    list(query: KeyListQuery) {
      return guarded("key.list", async () => {
        if (query.limit <= 0) return [];
        const where: FilterQuery<ApiKeyEntity>[] = [{ tenantId: query.tenantId }];
        if (!query.includeRevoked) where.push({ revokedAt: null });
        const { after } = query;
        if (after) {
          where.push({
            $or: [{ createdAt: { $lt: after.createdAt } }, { createdAt: after.createdAt, id: { $lt: after.id } }],
          });
        }
        const rows = await orm.em.fork().find(
          ApiKeyEntity,
          { $and: where },
          { orderBy: { createdAt: "desc", id: "desc" }, limit: query.limit },
        );
        return rows.map(toKeyRecord);
      });
    },

    addUsage(deltas) {
      return guarded("key.addUsage", async () => {
        if (deltas.length === 0) return;
        const merged = mergeDeltas(deltas);
        await orm.em.fork().transactional(async (em) => {
          const dialect = options.batchedUsage;
          const at = dialect === "sqlite" ? (d: UsageDelta) => d.lastUsedAt.getTime() : (d: UsageDelta) => d.lastUsedAt;
          for (let i = 0; i < merged.length; i += USAGE_CHUNK) {
            const chunk = merged.slice(i, i + USAGE_CHUNK);
            await em.execute(batchedUsageSql(dialect, chunk.length), chunk.flatMap((d) => [d.id, d.count, at(d)]), "run");
          }
        });
      });
    },
  };
}
