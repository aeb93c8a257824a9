// Connect routes: one function taking the router, services built by factories.
import { Code, type ConnectError, type ConnectRouter, type Interceptor, type ServiceImpl } from "@connectrpc/connect";
import { callIds, principalKey } from "./call-context.js";
import { Authorization } from "../gen/envoy/service/auth/v3/external_auth_pb.js";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import { AuditService } from "../gen/keyward/v1/audit_pb.js";
import { KeyService } from "../gen/keyward/v1/keys_pb.js";
import { SettingsService } from "../gen/keyward/v1/settings_pb.js";
import * as reflectionV1 from "../gen/grpc/reflection/v1/reflection_pb.js";
import * as reflectionV1alpha from "../gen/grpc/reflection/v1alpha/reflection_pb.js";
import type { ReflectionServices } from "./reflection.js";
import type { Logger } from "../logger.js";
import { isServerFault, toConnectError } from "./errors.js";

export interface RoutesOptions {
  keyService: ServiceImpl<typeof KeyService>;
  settingsService: ServiceImpl<typeof SettingsService>;
  auditService: ServiceImpl<typeof AuditService>;
  reflection: ReflectionServices;
  authorization: ServiceImpl<typeof Authorization>;
  health: ServiceImpl<typeof Health>;
}

export function createRoutes(options: RoutesOptions) {
  return (router: ConnectRouter) => {
    router.service(KeyService, options.keyService);
    router.service(SettingsService, options.settingsService);
    router.service(AuditService, options.auditService);
    router.service(reflectionV1.ServerReflection, options.reflection.v1);
    router.service(reflectionV1alpha.ServerReflection, options.reflection.v1alpha);
    // Also on the lean gRPC path (app.ts); here for gRPC-Web, Connect and Watch.
    router.service(Authorization, options.authorization);
    router.service(Health, options.health);
  };
}

export interface RpcInterceptorOptions {
  logger: Logger;
  /** Called once per finished unary call (metrics). */
  onCall?: (method: string, code: number, seconds: number) => void;
  /** Share of hot-path calls (Verify, Check, health) logged; 0 logs none. */
  hotPathLogSampleRate?: number;
}

// Calls that run on every request and are never logged one by one (see hotPathLogSampleRate).
const HOT_SERVICES = new Set(["grpc.health.v1.Health", "envoy.service.auth.v3.Authorization", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"]);

/**
 * Every call through the Connect router: maps domain errors to codes (the one
 * place), logs faults with their cause, writes one line per management call
 * (who, what, outcome, request and trace ids) and reports metrics.
 */
export function createRpcInterceptor(options: RpcInterceptorOptions): Interceptor {
  const { logger, onCall } = options;
  const sampleRate = options.hotPathLogSampleRate ?? 0;
  return (next) => async (req) => {
    const start = performance.now();
    const rpc = `/${req.service.typeName}/${req.method.name}`;
    const hot = HOT_SERVICES.has(req.service.typeName) || rpc === "/keyward.v1.KeyService/Verify";
    const unary = req.method.methodKind === "unary";
    const log = (code: number, error?: ConnectError) => {
      const durationMs = Math.round((performance.now() - start) * 1000) / 1000;
      if (unary) onCall?.(rpc, code, durationMs / 1000);
      const fault = error !== undefined && isServerFault(error);
      if (!fault && hot && !(sampleRate > 0 && Math.random() < sampleRate)) return;
      const principal = req.contextValues.get(principalKey);
      const fields = {
        rpc,
        code: code === 0 ? "OK" : (Code[code] ?? String(code)),
        durationMs,
        ...callIds((name) => req.header.get(name)),
        ...(principal ? { actor: principal.actor, tenant: principal.kind === "key" ? principal.tenantId : undefined } : {}),
        ...(error ? { error: error.rawMessage } : {}),
      };
      if (fault) logger.error({ ...fields, err: error.cause ?? error }, "rpc failed");
      else logger.info(fields, hot ? "call" : "management call");
    };
    try {
      const res = await next(req);
      log(0);
      return res;
    } catch (error) {
      const connectError = toConnectError(error);
      log(connectError.code, connectError);
      throw connectError;
    }
  };
}
