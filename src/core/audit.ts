// Reading the audit trail: admins only, behind the tenant wall.
import { requireAdmin, type Principal } from "./auth.js";
import { invalidArgument } from "./errors.js";
import { resolveTenant } from "./keys.js";
import type { AuditEvent, AuditStore } from "./model.js";
import { decodePageToken, encodePageToken } from "./page-token.js";
import * as v from "./validation.js";

export interface AuditReaderOptions {
  store: AuditStore;
}

export interface AuditReader {
  list(
    principal: Principal,
    input: { tenantId: string; pageSize: number; pageToken: string },
  ): Promise<{ events: AuditEvent[]; nextPageToken: string }>;
}

export function createAuditReader(options: AuditReaderOptions): AuditReader {
  return {
    async list(principal, input) {
      requireAdmin(principal);
      const tenantId = resolveTenant(principal, input.tenantId);
      const limit = v.pageSize(input.pageSize);
      const scope = `audit:${tenantId}`;
      const cursor = decodePageToken(input.pageToken, scope);
      let after: { occurredAt: Date; id: string } | undefined;
      if (cursor) {
        if (typeof cursor.t !== "number" || typeof cursor.i !== "string") {
          throw invalidArgument("page_token is invalid; pass the next_page_token of the previous page unchanged");
        }
        after = { occurredAt: new Date(cursor.t), id: cursor.i };
      }
      const rows = await options.store.list({ tenantId, limit: limit + 1, after });
      const events = rows.slice(0, limit);
      const last = events.at(-1);
      const nextPageToken =
        rows.length > limit && last ? encodePageToken(scope, { t: last.occurredAt.getTime(), i: last.id }) : "";
      return { events, nextPageToken };
    },
  };
}
