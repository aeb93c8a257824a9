// keyward.v1.SettingsService: wire ⇄ domain only.
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { Authenticator } from "../core/auth.js";
import { callerOf } from "./call-context.js";
import type { SettingsManager } from "../core/settings.js";
import { SettingsService } from "../gen/keyward/v1/settings_pb.js";
import { settingToProto, settingTypeToDomain } from "./convert.js";

export interface SettingsServiceOptions {
  settings: SettingsManager;
  auth: Authenticator;
}

export function createSettingsService(options: SettingsServiceOptions): ServiceImpl<typeof SettingsService> {
  const { settings, auth } = options;
  const principal = (ctx: HandlerContext) => callerOf(auth, ctx);

  return {
    async setSetting(request, ctx) {
      const caller = await principal(ctx);
      const s = request.setting;
      const record = await settings.set(caller, {
        tenantId: s?.tenantId ?? "",
        key: s?.key ?? "",
        value: s?.value ?? "",
        valueType: s ? settingTypeToDomain(s.valueType) : undefined,
        description: s?.description ?? "",
        descriptionAr: s?.descriptionAr ?? "",
        isPublic: s?.isPublic ?? false,
      });
      return { setting: settingToProto(record) };
    },

    async getSetting(request, ctx) {
      const record = await settings.get(await principal(ctx), request.tenantId, request.key);
      return { setting: settingToProto(record) };
    },

    async listSettings(request, ctx) {
      const { records, nextPageToken } = await settings.list(await principal(ctx), {
        tenantId: request.tenantId,
        pageSize: request.pageSize,
        pageToken: request.pageToken,
      });
      return { settings: records.map(settingToProto), nextPageToken };
    },

    async deleteSetting(request, ctx) {
      await settings.delete(await principal(ctx), request.tenantId, request.key);
      return {};
    },
  };
}
