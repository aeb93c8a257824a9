// SettingStore over MikroORM: one EntityManager fork per call, and each
// mutation commits together with its audit event.

import type { FilterQuery } from "@mikro-orm/core";
import type { AuditInput, SettingListQuery, SettingRecord, SettingStore } from "../core/model.js";
import { recordAudit } from "./audit-store.js";
import { SettingEntity } from "./entities.js";
import type { SqlOrm } from "./orm-types.js";
import { toSettingRecord } from "./records.js";
import { guarded } from "./storage-errors.js";

export function createSettingStore(orm: SqlOrm): SettingStore {
  return {
    get(tenantId, key) {
      return guarded("setting.get", async () => {
        const entity = await orm.em.fork().findOne(SettingEntity, { tenantId, key });
        return entity ? toSettingRecord(entity) : null;
      });
    },

    upsert(record: SettingRecord, audit: AuditInput) {
      return guarded("setting.upsert", () =>
        orm.em.fork().transactional(async (em) => {
          // insert ... on conflict (tenant_id, key) do update: one statement, no read-then-write race.
          const entity = await em.upsert(SettingEntity, { ...record }, { onConflictFields: ["tenantId", "key"] });
          await recordAudit(em, record.tenantId, record.key, audit);
          return toSettingRecord(entity);
        }),
      );
    },

    list(query: SettingListQuery) {
      return guarded("setting.list", async () => {
        if (query.limit <= 0) return [];
        const where: FilterQuery<SettingEntity>[] = [{ tenantId: query.tenantId }];
        if (query.afterKey !== undefined) where.push({ key: { $gt: query.afterKey } });
        if (query.publicOnly) where.push({ isPublic: true });
        const rows = await orm.em
          .fork()
          .find(SettingEntity, { $and: where }, { orderBy: { key: "asc" }, limit: query.limit });
        return rows.map(toSettingRecord);
      });
    },

    delete(tenantId, key, audit) {
      return guarded("setting.delete", () =>
        orm.em.fork().transactional(async (em) => {
          const deleted = await em.nativeDelete(SettingEntity, { tenantId, key });
          if (deleted === 0) return false;
          await recordAudit(em, tenantId, key, audit);
          return true;
        }),
      );
    },
  };
}
