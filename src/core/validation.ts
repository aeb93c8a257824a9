// Input rules shared by the management calls. Each failure names the field.
import { invalidArgument } from "./errors.js";
import { isWellFormedKey } from "./key-format.js";

export const LIMITS = {
  idLength: 64,
  tenantIdLength: 128,
  nameLength: 256,
  scopes: 64,
  scopeLength: 128,
  metadataEntries: 32,
  metadataKeyLength: 64,
  metadataValueLength: 1024,
  metadataBytes: 8192,
  reasonLength: 512,
  settingKeyLength: 128,
  settingValueBytes: 65_536,
  descriptionLength: 1024,
  pageSizeDefault: 50,
  pageSizeMax: 1000,
  pageTokenLength: 512,
  maxWindowSeconds: 366 * 24 * 3600,
} as const;

const TENANT_RE = /^[A-Za-z0-9][A-Za-z0-9._:-]*$/;
// No commas or spaces: ext_authz routes list scopes comma- or space-separated.
const SCOPE_RE = /^[A-Za-z0-9][A-Za-z0-9._:/*-]*$/;
const SETTING_KEY_RE = /^[A-Za-z0-9][A-Za-z0-9._:-]*$/;
const encoder = new TextEncoder();

export function utf8Length(s: string): number {
  return encoder.encode(s).length;
}

/** Rejects unpaired surrogates and NUL, which do not survive storage faithfully. */
function checkText(field: string, value: string, max: number): string {
  if (value.length > max) throw invalidArgument(`${field} must be at most ${max} characters`);
  if (!value.isWellFormed()) throw invalidArgument(`${field} is not valid UTF-8`);
  if (value.includes("\0")) throw invalidArgument(`${field} must not contain NUL characters`);
  return value;
}

export function text(field: string, value: string, max: number = LIMITS.nameLength): string {
  return checkText(field, value, max);
}

export function tenantId(value: string, field = "tenant_id"): string {
  if (value === "") throw invalidArgument(`${field} is required`);
  checkText(field, value, LIMITS.tenantIdLength);
  if (!TENANT_RE.test(value)) {
    throw invalidArgument(`${field} may contain only letters, digits, '.', '_', ':' and '-', starting with a letter or digit`);
  }
  return value;
}

export function id(value: string, field = "id"): string {
  if (value === "") throw invalidArgument(`${field} is required`);
  return checkText(field, value, LIMITS.idLength);
}

export function scopes(values: readonly string[], field = "scopes"): string[] {
  if (values.length > LIMITS.scopes) throw invalidArgument(`${field} may hold at most ${LIMITS.scopes} entries`);
  const out: string[] = [];
  for (const scope of values) {
    if (scope.length === 0 || scope.length > LIMITS.scopeLength || !SCOPE_RE.test(scope)) {
      throw invalidArgument(
        `${field} entries must be 1-${LIMITS.scopeLength} characters of letters, digits and '._:/*-' (no spaces or commas)`,
      );
    }
    if (!out.includes(scope)) out.push(scope);
  }
  return out;
}

export function metadata(values: Record<string, string>, field = "metadata"): Record<string, string> {
  const entries = Object.entries(values);
  if (entries.length > LIMITS.metadataEntries) {
    throw invalidArgument(`${field} may hold at most ${LIMITS.metadataEntries} entries`);
  }
  let bytes = 0;
  for (const [k, v] of entries) {
    if (k === "") throw invalidArgument(`${field} keys must not be empty`);
    checkText(`${field} key`, k, LIMITS.metadataKeyLength);
    checkText(`${field}["${k}"]`, v, LIMITS.metadataValueLength);
    bytes += utf8Length(k) + utf8Length(v);
  }
  if (bytes > LIMITS.metadataBytes) throw invalidArgument(`${field} must be at most ${LIMITS.metadataBytes} bytes in all`);
  return { ...values };
}

export function windowSeconds(value: number, field = "rate_limit_window_seconds"): number {
  if (value > LIMITS.maxWindowSeconds) throw invalidArgument(`${field} must be at most ${LIMITS.maxWindowSeconds}`);
  return value;
}

export function pageSize(value: number): number {
  if (value < 0) throw invalidArgument("page_size must not be negative");
  if (value === 0) return LIMITS.pageSizeDefault;
  return Math.min(value, LIMITS.pageSizeMax);
}

export function settingKey(value: string): string {
  if (value === "") throw invalidArgument("key is required");
  checkText("key", value, LIMITS.settingKeyLength);
  if (!SETTING_KEY_RE.test(value)) {
    throw invalidArgument("key may contain only letters, digits, '.', '_', ':' and '-', starting with a letter or digit");
  }
  return value;
}

/**
 * Caller input as it may appear in an error message: clipped, and never an
 * API key (someone pasting a key into the wrong field must not see it echoed
 * into client logs).
 */
export function quote(value: string, max = 64): string {
  if (isWellFormedKey(value) || /_[0-9A-Za-z]{38}/.test(value)) return "[redacted: looks like an API key]";
  const clipped = value.length > max ? `${value.slice(0, max)}…` : value;
  return `"${clipped}"`;
}
