// MikroORM entities for the three tables keyward owns. Column names follow
// the default underscore naming strategy (tenantId -> tenant_id).
//
// Dates use millisecond precision (timestamptz(3) on PostgreSQL; SQLite stores
// epoch milliseconds), matching JavaScript Date exactly so values round-trip.

import { defineEntity, p } from "@mikro-orm/core";

const ApiKeySchema = defineEntity({
  name: "ApiKeyEntity",
  tableName: "api_keys",
  properties: {
    id: p.string().length(64).primary(),
    tenantId: p.string().length(128),
    name: p.string().length(255),
    nameAr: p.string().length(255).default(""),
    prefix: p.string().length(64),
    // Verify looks keys up by hash; the unique index is both the lookup path and the collision guard.
    hash: p.string().length(64).unique("api_keys_hash_unique"),
    scopes: p.json<string[]>(),
    rateLimit: p.integer().default(0),
    rateLimitWindowSeconds: p.integer().default(0),
    expiresAt: p.datetime(3).nullable(),
    createdAt: p.datetime(3),
    updatedAt: p.datetime(3),
    lastUsedAt: p.datetime(3).nullable(),
    // bigint in the database so counters never overflow; JS number is exact up to 2^53.
    requestCount: p.bigint("number").defaultRaw("0"),
    enabled: p.boolean().default(true),
    revokedAt: p.datetime(3).nullable(),
    revokedReason: p.text().default(""),
    createdBy: p.string().length(128).default(""),
    metadata: p.json<Record<string, string>>(),
  },
  // Serves the keyset listing: WHERE tenant_id = ? ORDER BY created_at DESC, id DESC.
  indexes: [{ name: "api_keys_tenant_created_idx", properties: ["tenantId", "createdAt", "id"] }],
});

export class ApiKeyEntity extends ApiKeySchema.class {}
ApiKeySchema.setClass(ApiKeyEntity);

const SettingSchema = defineEntity({
  name: "SettingEntity",
  tableName: "settings",
  properties: {
    tenantId: p.string().length(128).primary(),
    key: p.string().length(255).primary(),
    value: p.text(),
    valueType: p.string().length(16),
    description: p.text().default(""),
    descriptionAr: p.text().default(""),
    isPublic: p.boolean().default(false),
    updatedAt: p.datetime(3),
  },
  primaryKeys: ["tenantId", "key"],
});

export class SettingEntity extends SettingSchema.class {}
SettingSchema.setClass(SettingEntity);

const AuditEventSchema = defineEntity({
  name: "AuditEventEntity",
  tableName: "audit_events",
  properties: {
    id: p.string().length(64).primary(),
    tenantId: p.string().length(128),
    actor: p.string().length(128),
    action: p.string().length(64),
    target: p.string().length(255),
    details: p.json<Record<string, unknown>>(),
    occurredAt: p.datetime(3),
  },
  indexes: [{ name: "audit_events_tenant_occurred_idx", properties: ["tenantId", "occurredAt", "id"] }],
});

export class AuditEventEntity extends AuditEventSchema.class {}
AuditEventSchema.setClass(AuditEventEntity);

/** Explicit list: no folder discovery, so the same code works from src/ and dist/. */
export const entities = [ApiKeySchema, SettingSchema, AuditEventSchema];
