// Plain HTTP endpoints, answered before the Connect adapter sees the request:
// /v1/authz (forward-auth), /healthz (liveness) and /readyz (readiness). Their
// paths can never be RPC paths ("/package.Service/Method"), so everything else
// falls through to Connect unchanged.
import { isForwardAuthPath, type PlainHandler, type PlainRequest, type PlainResponse } from "./forward-auth.js";
import type { HealthState } from "./health.js";
import type { HttpHandler } from "./server.js";

export interface HttpRoutesOptions {
  forwardAuth: PlainHandler;
  health: HealthState;
  /** Result of the last database check, reported by /readyz. */
  databaseUp?: () => boolean;
  /** Prometheus exposition for GET /metrics; undefined turns the endpoint off. */
  metrics?: () => Promise<{ contentType: string; body: string }>;
  /** Everything that is not a plain endpoint (connect-node's adapter). */
  fallback: HttpHandler;
}

function json(req: PlainRequest, res: PlainResponse, status: number, value: unknown, extra: Record<string, string> = {}): void {
  const body = JSON.stringify(value);
  res.writeHead(status, {
    "content-type": "application/json",
    "cache-control": "no-store",
    "content-length": String(req.method === "HEAD" ? 0 : Buffer.byteLength(body)),
    ...extra,
  });
  res.end(req.method === "HEAD" ? "" : body);
}

export function createHttpRoutes(options: HttpRoutesOptions): HttpHandler {
  const { forwardAuth, health, fallback, metrics } = options;
  const database = () => (options.databaseUp === undefined ? undefined : options.databaseUp() ? "up" : "down");
  return (req, res) => {
    const url = req.url ?? "/";
    const q = url.indexOf("?");
    const path = q === -1 ? url : url.slice(0, q);
    if (isForwardAuthPath(path)) return forwardAuth(req, res);
    if (path === "/metrics" && metrics && req.method === "GET") {
      metrics().then(
        ({ contentType, body }) => {
          const out = res as PlainResponse;
          out.writeHead(200, { "content-type": contentType, "cache-control": "no-store" });
          out.end(body);
        },
        () => json(req, res, 500, { error: "metrics unavailable", code: "internal" }),
      );
      return;
    }
    if (path !== "/healthz" && path !== "/readyz") return fallback(req, res);
    if (req.method !== "GET" && req.method !== "HEAD") {
      return json(req, res, 405, { error: "method not allowed", code: "method_not_allowed" }, { allow: "GET, HEAD" });
    }
    // Liveness: the process answers. Readiness: it should receive traffic.
    if (path === "/healthz") return json(req, res, 200, { status: "ok" });
    // A database lost after start does not make keyward unready: cached keys keep
    // verifying and misses fail closed. The body says how the database is.
    if (health.serving) return json(req, res, 200, { status: "serving", database: database() });
    return json(req, res, 503, { status: "not_serving", reason: health.reason, database: database() });
  };
}
