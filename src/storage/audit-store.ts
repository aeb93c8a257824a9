// Audit events are written by the mutating stores inside their own
// transactions (recordAudit); this store only reads them back.

import { randomBytes } from "node:crypto";
import type { AuditEvent, AuditInput, AuditQuery, AuditStore } from "../core/model.js";
import { AuditEventEntity } from "./entities.js";
import type { SqlEntityManager, SqlOrm } from "./orm-types.js";
import { toAuditEvent } from "./records.js";
import { guarded } from "./storage-errors.js";

export function newAuditEventId(): string {
  return `evt_${randomBytes(16).toString("base64url")}`;
}

/** Inserts the audit event for a change; `em` must be the change's transactional EntityManager. */
export async function recordAudit(
  em: SqlEntityManager,
  tenantId: string,
  target: string,
  audit: AuditInput,
): Promise<void> {
  await em.insert(AuditEventEntity, {
    id: newAuditEventId(),
    tenantId,
    actor: audit.actor,
    action: audit.action,
    target,
    details: audit.details,
    occurredAt: audit.at,
  });
}

export function createAuditStore(orm: SqlOrm): AuditStore {
  return {
    list(query: AuditQuery): Promise<AuditEvent[]> {
      return guarded("audit.list", async () => {
        if (query.limit <= 0) return [];
        const { after } = query;
        const rows = await orm.em.fork().find(
          AuditEventEntity,
          after
            ? {
                tenantId: query.tenantId,
                $or: [
                  { occurredAt: { $lt: after.occurredAt } },
                  { occurredAt: after.occurredAt, id: { $lt: after.id } },
                ],
              }
            : { tenantId: query.tenantId },
          { orderBy: { occurredAt: "desc", id: "desc" }, limit: query.limit },
        );
        return rows.map(toAuditEvent);
      });
    },
  };
}
