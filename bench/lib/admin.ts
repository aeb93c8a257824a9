// Management calls the bench makes through keyward's own API (Connect
// client, gRPC protocol): issue the hot keys, read a key's usage count.
import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { KeyService } from "../../src/gen/keyward/v1/keys_pb.js";

export interface IssuedKey {
  key: string;
  id: string;
}

export interface AdminClient {
  readonly keys: Client<typeof KeyService>;
  issue(name: string, scopes: string[], rateLimit: number): Promise<IssuedKey>;
  /** request_count as keyward reports it: stored plus counted but not yet written. */
  requestCount(id: string): Promise<number>;
}

export function createAdminClient(baseUrl: string, adminToken: string): AdminClient {
  const keys = createClient(KeyService, createGrpcTransport({ baseUrl }));
  const headers = { authorization: `Bearer ${adminToken}` };
  return {
    keys,
    async issue(name, scopes, rateLimit) {
      const res = await keys.issue({ tenantId: "bench", name, scopes, rateLimit }, { headers });
      return { key: res.key, id: res.apiKey!.id };
    },
    async requestCount(id) {
      const res = await keys.getKey({ id }, { headers });
      return Number(res.apiKey!.requestCount);
    },
  };
}

/** keyward_idle_gcs_total from keyward's /metrics: how many idle collections it has run (NaN if unreadable). */
export function readIdleGcs(baseUrl: string): Promise<number> {
  return fetch(`${baseUrl}/metrics`)
    .then((r) => r.text())
    .then(
      (text) => Number(/^keyward_idle_gcs_total (\d+)/m.exec(text)?.[1] ?? NaN),
      () => NaN,
    );
}
