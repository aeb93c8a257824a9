// Wire ⇄ domain mapping for keyward.v1 messages.
import { create } from "@bufbuild/protobuf";
import { timestampDate, timestampFromMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import { invalidArgument } from "../core/errors.js";
import type { KeyRecord, SettingRecord, SettingType as DomainSettingType } from "../core/model.js";
import type { PendingUsage } from "../core/usage.js";
import type { VerifyCode as DomainVerifyCode } from "../core/verifier.js";
import { ApiKeySchema, VerifyCode, type ApiKey } from "../gen/keyward/v1/keys_pb.js";
import { SettingSchema, SettingType, type Setting } from "../gen/keyward/v1/settings_pb.js";

const ts = (d: Date | null): Timestamp | undefined => (d === null ? undefined : timestampFromMs(d.getTime()));

/** ApiKey as callers see it: stored usage plus what is counted here but not yet written. */
export function apiKeyToProto(record: KeyRecord, pending?: PendingUsage): ApiKey {
  let lastUsedAt = record.lastUsedAt;
  if (pending && (lastUsedAt === null || pending.lastUsedAt > lastUsedAt.getTime())) {
    lastUsedAt = new Date(pending.lastUsedAt);
  }
  return create(ApiKeySchema, {
    id: record.id,
    tenantId: record.tenantId,
    name: record.name,
    nameAr: record.nameAr,
    prefix: record.prefix,
    scopes: record.scopes,
    rateLimit: record.rateLimit,
    rateLimitWindowSeconds: record.rateLimitWindowSeconds,
    expiresAt: ts(record.expiresAt),
    createdAt: ts(record.createdAt),
    updatedAt: ts(record.updatedAt),
    lastUsedAt: ts(lastUsedAt),
    requestCount: BigInt(record.requestCount + (pending?.count ?? 0)),
    enabled: record.enabled,
    revokedAt: ts(record.revokedAt),
    revokedReason: record.revokedReason,
    createdBy: record.createdBy,
    metadata: record.metadata,
  });
}

/** Timestamps from callers: unset is null; out-of-range values are rejected. */
export function timestampToDate(field: string, value: Timestamp | undefined): Date | null {
  if (value === undefined) return null;
  if (value.nanos < 0 || value.nanos > 999_999_999) throw invalidArgument(`${field} has invalid nanos`);
  const date = timestampDate(value);
  // RFC 3339 range, as google.protobuf.Timestamp requires.
  if (Number.isNaN(date.getTime()) || date.getUTCFullYear() < 1 || date.getUTCFullYear() > 9999) {
    throw invalidArgument(`${field} is outside 0001-01-01 .. 9999-12-31`);
  }
  return date;
}

export const verifyCodeToProto: Record<DomainVerifyCode, VerifyCode> = {
  valid: VerifyCode.VALID,
  not_found: VerifyCode.NOT_FOUND,
  revoked: VerifyCode.REVOKED,
  expired: VerifyCode.EXPIRED,
  disabled: VerifyCode.DISABLED,
  rate_limited: VerifyCode.RATE_LIMITED,
  insufficient_scope: VerifyCode.INSUFFICIENT_SCOPE,
};

const settingTypeFromProto = new Map<SettingType, DomainSettingType>([
  [SettingType.STRING, "string"],
  [SettingType.INT, "int"],
  [SettingType.BOOL, "bool"],
  [SettingType.JSON, "json"],
]);
const settingTypeToProto: Record<DomainSettingType, SettingType> = {
  string: SettingType.STRING,
  int: SettingType.INT,
  bool: SettingType.BOOL,
  json: SettingType.JSON,
};

/** Undefined for UNSPECIFIED and for numbers this server does not know. */
export function settingTypeToDomain(value: SettingType): DomainSettingType | undefined {
  return settingTypeFromProto.get(value);
}

export function settingToProto(record: SettingRecord): Setting {
  return create(SettingSchema, {
    tenantId: record.tenantId,
    key: record.key,
    value: record.value,
    valueType: settingTypeToProto[record.valueType],
    description: record.description,
    descriptionAr: record.descriptionAr,
    isPublic: record.isPublic,
    updatedAt: ts(record.updatedAt),
  });
}
