// The one place where domain errors become status codes. Anything that is not
// a KeywardError is an internal fault: callers get a generic message, the
// original stays in `cause` for the log.
import { Code, ConnectError } from "@connectrpc/connect";
import { KeywardError, type ErrorKind } from "../core/errors.js";

const codes: Record<ErrorKind, Code> = {
  invalid_argument: Code.InvalidArgument,
  not_found: Code.NotFound,
  unauthenticated: Code.Unauthenticated,
  permission_denied: Code.PermissionDenied,
  unavailable: Code.Unavailable,
  already_exists: Code.AlreadyExists,
  failed_precondition: Code.FailedPrecondition,
  resource_exhausted: Code.ResourceExhausted,
};

export function toConnectError(error: unknown): ConnectError {
  if (error instanceof ConnectError) return error;
  if (error instanceof KeywardError) return new ConnectError(error.message, codes[error.kind], undefined, undefined, error);
  return new ConnectError("internal error", Code.Internal, undefined, undefined, error);
}

/** True for errors worth a log line at error level (faults, not caller mistakes). */
export function isServerFault(error: ConnectError): boolean {
  return error.code === Code.Internal || error.code === Code.Unknown || error.code === Code.Unavailable || error.code === Code.DataLoss;
}
