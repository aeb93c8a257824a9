// keyward.v1.AuditService: wire ⇄ domain only.
import { create, type JsonObject } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import type { AuditReader } from "../core/audit.js";
import type { Authenticator } from "../core/auth.js";
import { callerOf } from "./call-context.js";
import type { AuditEvent } from "../core/model.js";
import { AuditEventSchema, AuditService } from "../gen/keyward/v1/audit_pb.js";

export interface AuditServiceOptions {
  audit: AuditReader;
  auth: Authenticator;
}

function toProto(event: AuditEvent) {
  return create(AuditEventSchema, {
    id: event.id,
    tenantId: event.tenantId,
    actor: event.actor,
    action: event.action,
    target: event.target,
    // google.protobuf.Struct is a plain JSON object in protobuf-es; the round trip drops
    // anything JSON cannot hold (dates become strings).
    details: JSON.parse(JSON.stringify(event.details)) as JsonObject,
    occurredAt: timestampFromMs(event.occurredAt.getTime()),
  });
}

export function createAuditService(options: AuditServiceOptions): ServiceImpl<typeof AuditService> {
  return {
    async listAuditEvents(request, ctx) {
      const principal = await callerOf(options.auth, ctx);
      const { events, nextPageToken } = await options.audit.list(principal, {
        tenantId: request.tenantId,
        pageSize: request.pageSize,
        pageToken: request.pageToken,
      });
      return { events: events.map(toProto), nextPageToken };
    },
  };
}
