// Typed per-tenant settings. Values are validated against their type on write;
// non-admin keys read only their own tenant's public settings.
import { isAdmin, requireAdmin, type Principal } from "./auth.js";
import { invalidArgument, notFound } from "./errors.js";
import { resolveTenant } from "./keys.js";
import type { Clock, SettingRecord, SettingStore, SettingType } from "./model.js";
import { decodePageToken, encodePageToken } from "./page-token.js";
import * as v from "./validation.js";
import { quote } from "./validation.js";

export interface SetSettingInput {
  tenantId: string;
  key: string;
  value: string;
  /** Undefined when the wire value is unspecified or unknown. */
  valueType: SettingType | undefined;
  description: string;
  descriptionAr: string;
  isPublic: boolean;
}

export interface SettingsManagerOptions {
  store: SettingStore;
  clock: Clock;
}

export interface SettingsManager {
  set(principal: Principal, input: SetSettingInput): Promise<SettingRecord>;
  get(principal: Principal, tenantId: string, key: string): Promise<SettingRecord>;
  list(
    principal: Principal,
    input: { tenantId: string; pageSize: number; pageToken: string },
  ): Promise<{ records: SettingRecord[]; nextPageToken: string }>;
  delete(principal: Principal, tenantId: string, key: string): Promise<void>;
}

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/** Throws INVALID_ARGUMENT unless `value` parses as `type`. */
export function checkSettingValue(type: SettingType, value: string): void {
  switch (type) {
    case "string":
      return;
    case "int": {
      if (!/^-?(0|[1-9][0-9]*)$/.test(value)) throw invalidArgument(`value ${quote(value, 32)} is not an integer`);
      const n = BigInt(value);
      if (n < INT64_MIN || n > INT64_MAX) throw invalidArgument("value is outside the 64-bit integer range");
      return;
    }
    case "bool":
      if (value !== "true" && value !== "false") throw invalidArgument(`value ${quote(value, 32)} is not "true" or "false"`);
      return;
    case "json":
      try {
        JSON.parse(value);
      } catch {
        throw invalidArgument("value is not valid JSON");
      }
      return;
  }
}


export function createSettingsManager(options: SettingsManagerOptions): SettingsManager {
  const { store, clock } = options;
  const missing = (key: string) => notFound(`setting ${v.quote(key)} not found`);

  return {
    async set(principal, input) {
      requireAdmin(principal);
      const tenantId = resolveTenant(principal, input.tenantId);
      const key = v.settingKey(input.key);
      if (input.valueType === undefined) {
        throw invalidArgument("value_type is required (SETTING_TYPE_STRING, _INT, _BOOL or _JSON)");
      }
      if (v.utf8Length(input.value) > v.LIMITS.settingValueBytes) {
        throw invalidArgument(`value must be at most ${v.LIMITS.settingValueBytes} bytes`);
      }
      v.text("value", input.value, v.LIMITS.settingValueBytes);
      checkSettingValue(input.valueType, input.value);
      const at = new Date(clock.now());
      const record: SettingRecord = {
        tenantId,
        key,
        value: input.value,
        valueType: input.valueType,
        description: v.text("description", input.description, v.LIMITS.descriptionLength),
        descriptionAr: v.text("description_ar", input.descriptionAr, v.LIMITS.descriptionLength),
        isPublic: input.isPublic,
        updatedAt: at,
      };
      return store.upsert(record, {
        actor: principal.actor,
        action: "setting.set",
        details: { key, valueType: record.valueType, isPublic: record.isPublic },
        at,
      });
    },

    async get(principal, tenantIdInput, keyInput) {
      const tenantId = resolveTenant(principal, tenantIdInput);
      const key = v.settingKey(keyInput);
      const record = await store.get(tenantId, key);
      // A private setting is invisible, not forbidden, to non-admin keys.
      if (!record || (!isAdmin(principal) && !record.isPublic)) throw missing(key);
      return record;
    },

    async list(principal, input) {
      const tenantId = resolveTenant(principal, input.tenantId);
      const limit = v.pageSize(input.pageSize);
      const publicOnly = !isAdmin(principal);
      const scope = `settings:${tenantId}:${publicOnly ? 1 : 0}`;
      const cursor = decodePageToken(input.pageToken, scope);
      if (cursor && typeof cursor.k !== "string") {
        throw invalidArgument("page_token is invalid; pass the next_page_token of the previous page unchanged");
      }
      const afterKey = cursor?.k as string | undefined;
      const rows = await store.list({ tenantId, limit: limit + 1, afterKey, publicOnly });
      const records = rows.slice(0, limit);
      const last = records.at(-1);
      return { records, nextPageToken: rows.length > limit && last ? encodePageToken(scope, { k: last.key }) : "" };
    },

    async delete(principal, tenantIdInput, keyInput) {
      requireAdmin(principal);
      const tenantId = resolveTenant(principal, tenantIdInput);
      const key = v.settingKey(keyInput);
      const deleted = await store.delete(tenantId, key, {
        actor: principal.actor,
        action: "setting.delete",
        details: { key },
        at: new Date(clock.now()),
      });
      if (!deleted) throw missing(key);
    },
  };
}
