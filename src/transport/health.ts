// grpc.health.v1.Health (Check on the lean path, Watch through the Connect
// router) and the state behind /readyz. Every service keyward reports on shares
// one status: all of them need the database at start and all of them drain
// together. Only start (database unreachable) and stop (draining) change it; a
// database that fails later is not a reason to stop serving cached keys.
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { invalidArgument } from "../core/errors.js";
import {
  Health,
  HealthCheckRequestSchema,
  HealthCheckResponse_ServingStatus as ServingStatus,
  HealthCheckResponseSchema,
  type HealthCheckRequest,
  type HealthCheckResponse,
} from "../gen/grpc/health/v1/health_pb.js";
import { frame, lean, type UnaryMethod } from "./grpc-unary.js";

export { ServingStatus };

export interface HealthStateOptions {
  /** Service names reported on; "" (the server as a whole) is always included. */
  services: readonly string[];
}

export interface HealthState {
  /** SERVING or NOT_SERVING for a known service, undefined for an unknown one. */
  status(service: string): ServingStatus | undefined;
  readonly serving: boolean;
  /** Why the server is not serving ("starting", "database unreachable", "draining"); "" while serving. */
  readonly reason: string;
  /** Sets every service; ignored after shutdown(). */
  set(serving: boolean, reason?: string): void;
  /** NOT_SERVING for good: every Watch stream receives it and then ends. */
  shutdown(): void;
  readonly closed: boolean;
  /** Calls `listener` after every change; returns the unsubscribe function. */
  subscribe(listener: () => void): () => void;
}

export function createHealthState(options: HealthStateOptions): HealthState {
  const services = new Set(["", ...options.services]);
  let status = ServingStatus.NOT_SERVING;
  let reason = "starting";
  let closed = false;
  const listeners = new Set<() => void>();
  const notify = () => {
    for (const listener of listeners) listener();
  };
  return {
    status: (service) => (services.has(service) ? status : undefined),
    get serving() {
      return status === ServingStatus.SERVING;
    },
    get reason() {
      return reason;
    },
    get closed() {
      return closed;
    },
    set(serving, why = serving ? "" : "not serving") {
      if (closed) return;
      const next = serving ? ServingStatus.SERVING : ServingStatus.NOT_SERVING;
      reason = serving ? "" : why;
      if (next === status) return;
      status = next;
      notify();
    },
    shutdown() {
      if (closed) return;
      closed = true;
      status = ServingStatus.NOT_SERVING;
      reason = "draining";
      notify();
    },
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}

const responses = new Map(
  [ServingStatus.SERVING, ServingStatus.NOT_SERVING, ServingStatus.SERVICE_UNKNOWN].map((s) => [s, create(HealthCheckResponseSchema, { status: s })]),
);

/** Health/Check as a plain function for the lean gRPC path and the router. */
export function createHealthCheckHandler(state: HealthState): (request: HealthCheckRequest) => HealthCheckResponse {
  return (request) => {
    const status = state.status(request.service);
    if (status === undefined) throw new ConnectError(`unknown service "${request.service}"`, Code.NotFound);
    return responses.get(status)!;
  };
}

// Probes (kubelet, grpc_health_probe, Envoy) mostly ask about "" with an empty
// message: that request needs no decoding, and the three answers are framed once.
const EMPTY_REQUEST = create(HealthCheckRequestSchema);
const frames = new Map(
  [...responses].map(([status, response]) => {
    return [response, frame(toBinary(HealthCheckResponseSchema, response))] as const;
  }),
);

/** Health/Check for the lean gRPC path. */
export function createHealthCheckMethod(state: HealthState): UnaryMethod {
  const check = createHealthCheckHandler(state);
  return lean<HealthCheckRequest, HealthCheckResponse>({
    path: `/${Health.typeName}/${Health.method.check.name}`,
    decode(payload) {
      if (payload.length === 0) return EMPTY_REQUEST;
      try {
        return fromBinary(HealthCheckRequestSchema, payload);
      } catch {
        throw invalidArgument(`request is not a valid ${HealthCheckRequestSchema.typeName} message`);
      }
    },
    handle: check,
    encode: (response) => toBinary(HealthCheckResponseSchema, response),
    encodeFrame: (response) => frames.get(response) ?? frame(toBinary(HealthCheckResponseSchema, response)),
  });
}

export function createHealthService(state: HealthState): ServiceImpl<typeof Health> {
  const check = createHealthCheckHandler(state);
  return {
    check: (request) => check(request),
    async *watch(request, ctx) {
      let wake: (() => void) | undefined;
      const poke = () => wake?.();
      const unsubscribe = state.subscribe(poke);
      ctx.signal.addEventListener("abort", poke);
      try {
        let last: ServingStatus | undefined;
        for (;;) {
          // Changes that happen while a send is pending are coalesced into the latest.
          const current = state.status(request.service) ?? ServingStatus.SERVICE_UNKNOWN;
          if (current !== last) {
            last = current;
            yield responses.get(current)!;
            continue;
          }
          if (state.closed || ctx.signal.aborted) return;
          await new Promise<void>((resolve) => (wake = resolve));
          wake = undefined;
        }
      } finally {
        unsubscribe();
        ctx.signal.removeEventListener("abort", poke);
      }
    },
  };
}
