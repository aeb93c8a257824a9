// Entity <-> domain record conversion. Arrays and objects are copied so
// callers never share state with an EntityManager's identity map.

import type { AuditEvent, KeyRecord, SettingRecord, SettingType } from "../core/model.js";
import type { ApiKeyEntity, AuditEventEntity, SettingEntity } from "./entities.js";

export function toKeyRecord(entity: ApiKeyEntity): KeyRecord {
  return {
    id: entity.id,
    tenantId: entity.tenantId,
    name: entity.name,
    nameAr: entity.nameAr,
    prefix: entity.prefix,
    hash: entity.hash,
    scopes: [...entity.scopes],
    rateLimit: entity.rateLimit,
    rateLimitWindowSeconds: entity.rateLimitWindowSeconds,
    expiresAt: entity.expiresAt ?? null,
    createdAt: entity.createdAt,
    updatedAt: entity.updatedAt,
    lastUsedAt: entity.lastUsedAt ?? null,
    requestCount: Number(entity.requestCount),
    enabled: entity.enabled,
    revokedAt: entity.revokedAt ?? null,
    revokedReason: entity.revokedReason,
    createdBy: entity.createdBy,
    metadata: { ...entity.metadata },
  };
}

export function toSettingRecord(entity: SettingEntity): SettingRecord {
  return {
    tenantId: entity.tenantId,
    key: entity.key,
    value: entity.value,
    valueType: entity.valueType as SettingType,
    description: entity.description,
    descriptionAr: entity.descriptionAr,
    isPublic: entity.isPublic,
    updatedAt: entity.updatedAt,
  };
}

export function toAuditEvent(entity: AuditEventEntity): AuditEvent {
  return {
    id: entity.id,
    tenantId: entity.tenantId,
    actor: entity.actor,
    action: entity.action,
    target: entity.target,
    details: { ...entity.details },
    occurredAt: entity.occurredAt,
  };
}
