// Counts the SQL statements keyward sends to PostgreSQL, exactly and as they
// happen: keyward connects through this TCP relay, which forwards every byte
// unchanged and reads the frontend side of the wire protocol (v3). A
// statement is one simple Query ('Q') or one Execute ('E') of the extended
// protocol, whose text comes from the Parse ('P') its Bind ('B') refers to.
// PostgreSQL's own statistics views would do, but backends publish them
// lazily (up to ~10 s late), which makes per-window counts unreliable; this
// counter is exact, sees keyward's connections only (pool, LISTEN, migration
// lock) and tells a lookup by hash from any other statement by its text.
import { createServer, connect, type AddressInfo, type Server, type Socket } from "node:net";

export interface StatementCounts {
  /** Every statement. */
  statements: number;
  /** SELECTs of api_keys by hash: the Verify/Check lookup. */
  keyLookups: number;
  /** Other SELECTs (by id, listings, heartbeats). */
  otherReads: number;
  /** INSERT/UPDATE/DELETE. */
  writes: number;
  /** BEGIN/COMMIT/ROLLBACK/SAVEPOINT, SET, LISTEN and the like. */
  other: number;
}

export interface PgWireCounter {
  /** The database URL with host and port replaced by the relay's. */
  relayUrl(databaseUrl: string): string;
  counts(): StatementCounts;
  /** The last `n` statement texts (newest last), for messages. */
  recent(n: number): string[];
  close(): Promise<void>;
}

const SSL_REQUEST = 80877103;
const GSSENC_REQUEST = 80877104;
const LOOKUP_RE = /^\s*select\b[\s\S]*\bfrom\s+"?api_keys"?[\s\S]*"hash"\s*=/i;

export const emptyCounts = (): StatementCounts => ({ statements: 0, keyLookups: 0, otherReads: 0, writes: 0, other: 0 });

export function countsBetween(a: StatementCounts, b: StatementCounts): StatementCounts {
  return {
    statements: b.statements - a.statements,
    keyLookups: b.keyLookups - a.keyLookups,
    otherReads: b.otherReads - a.otherReads,
    writes: b.writes - a.writes,
    other: b.other - a.other,
  };
}

function cstring(buf: Buffer, start: number): [string, number] {
  const end = buf.indexOf(0, start);
  if (end === -1) return [buf.toString("utf8", start), buf.length];
  return [buf.toString("utf8", start, end), end + 1];
}

export async function createPgWireCounter(upstream: { host: string; port: number }): Promise<PgWireCounter> {
  const totals = emptyCounts();
  const log: string[] = [];
  const sockets = new Set<Socket>();

  const count = (sql: string) => {
    totals.statements++;
    log.push(sql);
    if (log.length > 200) log.splice(0, log.length - 100);
    const verb = /^\s*(\w+)/.exec(sql)?.[1]?.toLowerCase() ?? "";
    if (LOOKUP_RE.test(sql)) totals.keyLookups++;
    else if (verb === "select" || verb === "with") totals.otherReads++;
    else if (verb === "insert" || verb === "update" || verb === "delete") totals.writes++;
    else totals.other++;
  };

  const relay = (client: Socket) => {
    const server = connect(upstream);
    sockets.add(client).add(server);
    const closeBoth = () => {
      client.destroy();
      server.destroy();
      sockets.delete(client);
      sockets.delete(server);
    };
    client.on("error", closeBoth).on("close", closeBoth);
    server.on("error", closeBoth).on("close", closeBoth);
    server.pipe(client);

    // Frontend messages of this connection, parsed as they pass.
    const statements = new Map<string, string>();
    const portals = new Map<string, string>();
    let startup = true;
    let pending: Buffer = Buffer.alloc(0);
    client.on("data", (chunk: Buffer) => {
      server.write(chunk);
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      let pos = 0;
      for (;;) {
        if (startup) {
          if (pending.length - pos < 8) break;
          const length = pending.readInt32BE(pos);
          if (pending.length - pos < length) break;
          const code = pending.readInt32BE(pos + 4);
          // After SSLRequest/GSSENCRequest the real startup message follows, also untyped.
          if (code !== SSL_REQUEST && code !== GSSENC_REQUEST) startup = false;
          pos += length;
          continue;
        }
        if (pending.length - pos < 5) break;
        const type = String.fromCharCode(pending[pos]!);
        const length = pending.readInt32BE(pos + 1);
        if (pending.length - pos < 1 + length) break;
        const body = pending.subarray(pos + 5, pos + 1 + length);
        pos += 1 + length;
        if (type === "Q") {
          count(cstring(body, 0)[0]);
        } else if (type === "P") {
          const [name, next] = cstring(body, 0);
          statements.set(name, cstring(body, next)[0]);
        } else if (type === "B") {
          const [portal, next] = cstring(body, 0);
          portals.set(portal, cstring(body, next)[0]);
        } else if (type === "E") {
          const [portal] = cstring(body, 0);
          count(statements.get(portals.get(portal) ?? "") ?? "?");
        }
      }
      pending = pos === pending.length ? Buffer.alloc(0) : pending.subarray(pos);
    });
  };

  const server: Server = createServer(relay);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host: "127.0.0.1", port: 0 }, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;

  return {
    relayUrl(databaseUrl) {
      const url = new URL(databaseUrl);
      url.hostname = "127.0.0.1";
      url.port = String(port);
      return url.toString();
    },
    counts: () => ({ ...totals }),
    recent: (n) => log.slice(-n),
    close() {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
