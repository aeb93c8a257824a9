// Structured JSON logs (pino). Callers never pass key material: records are
// logged by id, credentials not at all.
import { pino, type Logger } from "pino";

export type { Logger };

export interface LoggerOptions {
  level: string;
  /** Defaults to stdout; tests pass a stream to capture lines. */
  destination?: NodeJS.WritableStream;
}

export function createLogger(options: LoggerOptions): Logger {
  return pino(
    {
      level: options.level,
      base: { service: "keyward" },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    options.destination ?? process.stdout,
  );
}
