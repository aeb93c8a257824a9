// Connect routes: one function taking the router, services built by factories.
import type { ConnectRouter, Interceptor, ServiceImpl } from "@connectrpc/connect";
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

/** Maps domain errors to codes (one place) and logs faults with their cause. */
export function createErrorInterceptor(logger: Logger): Interceptor {
  return (next) => async (req) => {
    try {
      return await next(req);
    } catch (error) {
      const connectError = toConnectError(error);
      if (isServerFault(connectError)) {
        logger.error({ rpc: req.url, code: connectError.code, err: connectError.cause ?? connectError }, "rpc failed");
      }
      throw connectError;
    }
  };
}
