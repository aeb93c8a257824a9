// In-memory implementations of the core's storage ports, for unit tests of
// src/core. Integration tests use the real SQLite/PostgreSQL stores.
import type {
  AuditEvent,
  AuditInput,
  KeyListQuery,
  KeyPatch,
  KeyRecord,
  KeyStore,
  SettingListQuery,
  SettingRecord,
  SettingStore,
  UsageDelta,
} from "../../src/core/model.js";

const clone = <T>(v: T): T => structuredClone(v);

export interface MemoryStores {
  keys: KeyStore & { calls: Record<string, number>; failNext?: Error };
  settings: SettingStore;
  events: AuditEvent[];
}

export function createMemoryStores(): MemoryStores {
  const keys = new Map<string, KeyRecord>();
  const settings = new Map<string, SettingRecord>();
  const events: AuditEvent[] = [];
  const calls: Record<string, number> = {};
  const count = (name: string) => (calls[name] = (calls[name] ?? 0) + 1);
  const record = (tenantId: string, target: string, a: AuditInput) =>
    events.push({ id: `evt_${events.length}`, tenantId, target, actor: a.actor, action: a.action, details: a.details, occurredAt: a.at });
  const within = (r: KeyRecord | undefined, tenantId?: string) =>
    r && (tenantId === undefined || r.tenantId === tenantId) ? r : undefined;

  const keyStore: MemoryStores["keys"] = {
    calls,
    async findByHash(hash) {
      count("findByHash");
      for (const r of keys.values()) if (r.hash === hash) return clone(r);
      return null;
    },
    async findById(id, tenantId) {
      count("findById");
      const r = within(keys.get(id), tenantId);
      return r ? clone(r) : null;
    },
    async insert(r, audit) {
      count("insert");
      for (const other of keys.values()) if (other.hash === r.hash) throw new Error("duplicate hash");
      keys.set(r.id, clone(r));
      record(r.tenantId, r.id, audit);
    },
    async update(id, tenantId, patch: KeyPatch, audit) {
      count("update");
      const r = within(keys.get(id), tenantId);
      if (!r) return null;
      Object.assign(r, clone(patch), { updatedAt: audit.at });
      record(r.tenantId, id, audit);
      return clone(r);
    },
    async revoke(id, tenantId, reason, audit) {
      count("revoke");
      const r = within(keys.get(id), tenantId);
      if (!r) return null;
      if (r.revokedAt === null) {
        Object.assign(r, { revokedAt: audit.at, revokedReason: reason, updatedAt: audit.at });
        record(r.tenantId, id, audit);
      }
      return clone(r);
    },
    async list(q: KeyListQuery) {
      count("list");
      return [...keys.values()]
        .filter((r) => r.tenantId === q.tenantId && (q.includeRevoked || r.revokedAt === null))
        .sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime() || (a.id < b.id ? 1 : -1))
        .filter(
          (r) =>
            !q.after ||
            r.createdAt.getTime() < q.after.createdAt.getTime() ||
            (r.createdAt.getTime() === q.after.createdAt.getTime() && r.id < q.after.id),
        )
        .slice(0, q.limit)
        .map(clone);
    },
    async addUsage(deltas: UsageDelta[]) {
      count("addUsage");
      if (keyStore.failNext) {
        const e = keyStore.failNext;
        keyStore.failNext = undefined;
        throw e;
      }
      for (const d of deltas) {
        const r = keys.get(d.id);
        if (!r) continue;
        r.requestCount += d.count;
        if (!r.lastUsedAt || r.lastUsedAt < d.lastUsedAt) r.lastUsedAt = d.lastUsedAt;
      }
    },
  };

  const settingStore: SettingStore = {
    async get(tenantId, key) {
      const s = settings.get(`${tenantId}\0${key}`);
      return s ? clone(s) : null;
    },
    async upsert(s, audit) {
      settings.set(`${s.tenantId}\0${s.key}`, clone(s));
      record(s.tenantId, s.key, audit);
      return clone(s);
    },
    async list(q: SettingListQuery) {
      return [...settings.values()]
        .filter((s) => s.tenantId === q.tenantId && (!q.publicOnly || s.isPublic) && (!q.afterKey || s.key > q.afterKey))
        .sort((a, b) => (a.key < b.key ? -1 : 1))
        .slice(0, q.limit)
        .map(clone);
    },
    async delete(tenantId, key, audit) {
      const deleted = settings.delete(`${tenantId}\0${key}`);
      if (deleted) record(tenantId, key, audit);
      return deleted;
    },
  };

  return { keys: keyStore, settings: settingStore, events };
}

/** A clock tests move by hand. */
export function createManualClock(start = Date.parse("2026-01-01T00:00:00Z")) {
  let now = start;
  return { now: () => now, advance: (ms: number) => void (now += ms), set: (ms: number) => void (now = ms) };
}
