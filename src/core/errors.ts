// Domain errors. Transport maps each kind to a status code in exactly one place
// (src/transport/errors.ts). Messages are safe to show to callers: never key
// material, never SQL or stack details; those go in `cause`, for logs.

export type ErrorKind =
  | "invalid_argument"
  | "not_found"
  | "unauthenticated"
  | "permission_denied"
  | "unavailable"
  | "already_exists"
  | "failed_precondition"
  | "resource_exhausted";

export class KeywardError extends Error {
  readonly kind: ErrorKind;
  constructor(kind: ErrorKind, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.kind = kind;
    this.name = "KeywardError";
  }
}

export const invalidArgument = (message: string) => new KeywardError("invalid_argument", message);
export const notFound = (message: string) => new KeywardError("not_found", message);
export const unauthenticated = (message: string) => new KeywardError("unauthenticated", message);
export const permissionDenied = (message: string) => new KeywardError("permission_denied", message);
export const unavailable = (message: string, cause?: unknown) =>
  new KeywardError("unavailable", message, { cause });
