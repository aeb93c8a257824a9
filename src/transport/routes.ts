// Connect routes: one function taking the router, services built by factories.
import type { ConnectRouter, Interceptor, ServiceImpl } from "@connectrpc/connect";
import { KeyService } from "../gen/keyward/v1/keys_pb.js";
import { SettingsService } from "../gen/keyward/v1/settings_pb.js";
import type { Logger } from "../logger.js";
import { isServerFault, toConnectError } from "./errors.js";

export interface RoutesOptions {
  keyService: ServiceImpl<typeof KeyService>;
  settingsService: ServiceImpl<typeof SettingsService>;
}

export function createRoutes(options: RoutesOptions) {
  return (router: ConnectRouter) => {
    router.service(KeyService, options.keyService);
    router.service(SettingsService, options.settingsService);
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
