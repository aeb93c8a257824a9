// A MikroORM Logger that prints nothing and hands every executed SQL statement
// (including begin/commit/rollback) to an optional callback. Only the 'query'
// namespace is enabled, never 'query-params', so statements arrive with
// placeholders and no bound values.

import type { LogContext, Logger, LoggerNamespace } from "@mikro-orm/core";

export type QueryListener = (sql: string) => void;

export function createQueryLogger(onQuery: QueryListener | undefined): Logger {
  return {
    log() {},
    error() {},
    warn() {},
    setDebugMode() {},
    isEnabled(namespace: LoggerNamespace) {
      return onQuery !== undefined && namespace === "query";
    },
    logQuery(context: LogContext) {
      // Slow-query re-logs of the same statement would double count.
      if (onQuery === undefined || (context.namespace ?? "query") !== "query" || context.query === undefined) return;
      onQuery(context.query);
    },
  };
}
