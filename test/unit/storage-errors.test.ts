import { DriverException, UniqueConstraintViolationException } from "@mikro-orm/core";
import { describe, expect, it } from "vitest";
import { KeywardError } from "../../src/core/errors.js";
import { isBrokenConnection, sanitizeStorageError, StorageFailure } from "../../src/storage/storage-errors.js";

const driverError = (fields: Record<string, unknown>, message = "insert into api_keys values ('secret-hash')") =>
  new DriverException(Object.assign(new Error(message), fields));

describe("storage error sanitising", () => {
  it.each([
    ["too many connections", { sqlState: "53300" }],
    ["admin shutdown", { sqlState: "57P01" }],
    ["cannot connect now", { sqlState: "57P03" }],
    ["connection failure", { sqlState: "08006" }],
    ["refused socket", { code: "ECONNREFUSED" }],
  ])("maps %s to UNAVAILABLE", (_name, fields) => {
    const mapped = sanitizeStorageError("key.findByHash", driverError(fields));
    expect(mapped).toBeInstanceOf(KeywardError);
    expect((mapped as KeywardError).kind).toBe("unavailable");
    expect((mapped as KeywardError).message).toBe("database unavailable");
  });

  it("maps pool errors that are not driver exceptions", () => {
    const mapped = sanitizeStorageError("key.insert", new Error("Connection terminated unexpectedly"));
    expect((mapped as KeywardError).kind).toBe("unavailable");
  });

  it("keeps SQL and values out of everything that travels on", () => {
    const unique = sanitizeStorageError("key.insert", new UniqueConstraintViolationException(Object.assign(new Error('duplicate key value violates unique constraint: Key (hash)=(abc123)'), { sqlState: "23505" })));
    expect((unique as KeywardError).kind).toBe("already_exists");
    expect(JSON.stringify((unique as KeywardError).message)).not.toContain("abc123");
    const other = sanitizeStorageError("key.update", driverError({ sqlState: "42P01" }));
    expect(other).toBeInstanceOf(StorageFailure);
    expect((other as Error).message).toBe("key.update failed: DriverException (code 42P01)");
    expect((other as Error).message).not.toContain("secret-hash");
  });
});

describe("broken pooled connections (a read may go out again)", () => {
  const withCode = (code: string, message = "x") => Object.assign(new Error(message), { code });
  it.each([
    ["reset", withCode("ECONNRESET")],
    ["broken pipe", withCode("EPIPE")],
    ["admin shutdown of the backend", withCode("57P01")],
    ["pg's dropped socket", new Error("Connection terminated unexpectedly")],
    ["pg's client ended under a query", new Error("Connection terminated")],
    ["pg's errored client", new Error("Client has encountered a connection error and is not queryable")],
  ])("%s is", (_name, error) => {
    expect(isBrokenConnection(error)).toBe(true);
  });
  it.each([
    ["a refused connect (the database is down: trying again at once only adds latency)", withCode("ECONNREFUSED")],
    ["a connect timeout", new Error("timeout exceeded when trying to connect")],
    ["pg's connect timeout", new Error("Connection terminated due to connection timeout")],
    ["too many connections", withCode("53300")],
    ["a syntax error", withCode("42601")],
    ["not an error", undefined],
  ])("%s is not", (_name, error) => {
    expect(isBrokenConnection(error)).toBe(false);
  });
});
