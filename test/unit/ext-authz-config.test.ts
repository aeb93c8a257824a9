// Configuration of the authorization endpoints (ext_authz Check, forward-auth) and drain.
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../src/config.js";

describe("authorization configuration", () => {
  it("defaults to x-api-key, Bearer accepted, credential removed, no drain delay", () => {
    const config = loadConfig({});
    expect(config.authz).toEqual({ apiKeyHeader: "x-api-key", acceptBearer: true, removeCredential: true });
    expect(config.drainDelaySeconds).toBe(0);
  });

  it("reads the header name (lowercased) and the switches", () => {
    const config = loadConfig({
      KEYWARD_AUTHZ_API_KEY_HEADER: "X-Service-Key",
      KEYWARD_AUTHZ_ACCEPT_BEARER: "false",
      KEYWARD_AUTHZ_REMOVE_CREDENTIAL: "0",
      KEYWARD_DRAIN_DELAY_SECONDS: "5",
    });
    expect(config.authz).toEqual({ apiKeyHeader: "x-service-key", acceptBearer: false, removeCredential: false });
    expect(config.drainDelaySeconds).toBe(5);
  });

  it.each([
    ["KEYWARD_AUTHZ_API_KEY_HEADER", "x api key"],
    ["KEYWARD_AUTHZ_API_KEY_HEADER", "x-key:"],
    ["KEYWARD_AUTHZ_API_KEY_HEADER", "authorization"],
    ["KEYWARD_AUTHZ_API_KEY_HEADER", "x-keyward-key"],
    ["KEYWARD_AUTHZ_ACCEPT_BEARER", "maybe"],
    ["KEYWARD_AUTHZ_REMOVE_CREDENTIAL", "2"],
    ["KEYWARD_DRAIN_DELAY_SECONDS", "-1"],
    ["KEYWARD_DRAIN_DELAY_SECONDS", "301"],
  ])("rejects %s=%s naming the variable", (variable, value) => {
    let error: unknown;
    try {
      loadConfig({ [variable]: value });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).variable).toBe(variable);
    expect((error as Error).message).toMatch(new RegExp(`^${variable}: `));
  });
});
