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

/** The api_keys columns in the order KEY_ROW_SQL selects them. */
export const KEY_COLUMNS =
  "id, tenant_id, name, name_ar, prefix, hash, scopes, rate_limit, rate_limit_window_seconds, expires_at, " +
  "created_at, updated_at, last_used_at, request_count, enabled, revoked_at, revoked_reason, created_by, metadata";

const toDate = (v: unknown): Date | null => (v === null || v === undefined ? null : v instanceof Date ? v : new Date(v as string));
const toJson = <T>(v: unknown): T => (typeof v === "string" ? (JSON.parse(v) as T) : (v as T));

/** A raw api_keys row (pg driver types, whatever parsers the pool has) as a KeyRecord. */
export function keyRecordFromRow(row: Record<string, unknown>): KeyRecord {
  return {
    id: row.id as string,
    tenantId: row.tenant_id as string,
    name: row.name as string,
    nameAr: row.name_ar as string,
    prefix: row.prefix as string,
    hash: row.hash as string,
    scopes: toJson<string[]>(row.scopes),
    rateLimit: Number(row.rate_limit),
    rateLimitWindowSeconds: Number(row.rate_limit_window_seconds),
    expiresAt: toDate(row.expires_at),
    createdAt: toDate(row.created_at)!,
    updatedAt: toDate(row.updated_at)!,
    lastUsedAt: toDate(row.last_used_at),
    requestCount: Number(row.request_count),
    enabled: row.enabled === true || row.enabled === 1,
    revokedAt: toDate(row.revoked_at),
    revokedReason: row.revoked_reason as string,
    createdBy: row.created_by as string,
    metadata: toJson<Record<string, string>>(row.metadata),
  };
}
