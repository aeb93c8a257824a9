// Command-line argument helpers shared by the commands. Anything wrong with
// what was typed is a UsageError (exit 2).

/** Exit codes scripts can rely on (documented in `keyward --help` and the README). */
export const EXIT = {
  ok: 0,
  /** Something failed, e.g. the database is unreachable. */
  failure: 1,
  /** Usage or configuration error, including a value keyward rejects. */
  usage: 2,
  /** revoke, settings get/delete: no such key or setting. */
  notFound: 3,
} as const;

/** keyward list without --limit. */
export const DEFAULT_LIST_LIMIT = 100;

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** A whole number from --name VALUE, or undefined when the option was not given. */
export function wholeNumber(option: string, raw: string | undefined, min: number, max: number): number | undefined {
  if (raw === undefined) return undefined;
  if (!/^\d+$/.test(raw)) throw new UsageError(`--${option}: expected a whole number, got "${raw}"`);
  const n = Number(raw);
  if (n < min || n > max) throw new UsageError(`--${option}: must be between ${min} and ${max}, got ${raw}`);
  return n;
}

// RFC 3339 date-time: a date, "T" (or space), a time and a mandatory offset.
const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

export function timestamp(option: string, raw: string | undefined): Date | undefined {
  if (raw === undefined) return undefined;
  const date = new Date(raw);
  if (!RFC3339.test(raw) || Number.isNaN(date.getTime())) {
    throw new UsageError(`--${option}: expected an RFC 3339 time such as 2027-01-31T00:00:00Z, got "${raw}"`);
  }
  return date;
}

/** Repeated --option k=v into a record; the first "=" splits. */
export function keyValues(option: string, raws: readonly string[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const raw of raws ?? []) {
    const at = raw.indexOf("=");
    if (at <= 0) throw new UsageError(`--${option}: expected KEY=VALUE, got "${raw}"`);
    const key = raw.slice(0, at);
    if (Object.hasOwn(out, key)) throw new UsageError(`--${option}: "${key}" is given twice`);
    out[key] = raw.slice(at + 1);
  }
  return out;
}

/** True when -h/--help appears before a "--" terminator. */
export function wantsHelp(args: readonly string[]): boolean {
  for (const arg of args) {
    if (arg === "--") return false;
    if (arg === "-h" || arg === "--help") return true;
  }
  return false;
}
