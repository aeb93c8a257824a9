// How records are printed: JSON for scripts (never a key hash), aligned
// columns for people.
import type { KeyRecord, SettingRecord } from "../core/model.js";

export type Print = (line: string) => void;

const iso = (date: Date | null) => (date === null ? null : date.toISOString());

/** A key's metadata as JSON; the hash stays out like the secret. */
export function keyJson(record: KeyRecord): Record<string, unknown> {
  return {
    id: record.id,
    tenantId: record.tenantId,
    name: record.name,
    nameAr: record.nameAr,
    prefix: record.prefix,
    scopes: record.scopes,
    rateLimit: record.rateLimit,
    rateLimitWindowSeconds: record.rateLimitWindowSeconds,
    expiresAt: iso(record.expiresAt),
    enabled: record.enabled,
    revokedAt: iso(record.revokedAt),
    revokedReason: record.revokedReason,
    createdAt: iso(record.createdAt),
    updatedAt: iso(record.updatedAt),
    lastUsedAt: iso(record.lastUsedAt),
    requestCount: record.requestCount,
    createdBy: record.createdBy,
    metadata: record.metadata,
  };
}

export function settingJson(record: SettingRecord): Record<string, unknown> {
  return {
    tenantId: record.tenantId,
    key: record.key,
    value: record.value,
    valueType: record.valueType,
    isPublic: record.isPublic,
    description: record.description,
    descriptionAr: record.descriptionAr,
    updatedAt: record.updatedAt.toISOString(),
  };
}

export function keyStatus(record: KeyRecord, now: number): string {
  if (record.revokedAt !== null) return "revoked";
  if (!record.enabled) return "disabled";
  if (record.expiresAt !== null && record.expiresAt.getTime() <= now) return "expired";
  return "active";
}

/** One line per row, columns padded to their widest cell; control characters escaped. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string[] {
  const clean = (cell: string) => JSON.stringify(cell).slice(1, -1).replace(/\\"/g, '"');
  const cells = [header, ...rows].map((row) => row.map(clean));
  const widths = header.map((_, i) => Math.max(...cells.map((row) => row[i]!.length)));
  return cells.map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!))).join("  "));
}

export function clip(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}
