// A TCP proxy the test controls, to put between keyward and PostgreSQL and
// cut: cut() drops every open connection and refuses new ones until restore().
// breakNextWrite() leaves connections up but resets the first one the client
// next writes to, as a connection that died unnoticed while idle is found out.
import { createConnection, createServer, type Server, type Socket } from "node:net";

export interface TcpProxy {
  port: number;
  cut(): void;
  breakNextWrite(): void;
  /** Connections breakNextWrite() has reset. */
  readonly broken: number;
  restore(): void;
  close(): Promise<void>;
}

export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  let open = true;
  let breakNext = false;
  let broken = 0;
  const pairs = new Set<Socket>();
  const server: Server = createServer((client) => {
    if (!open) {
      client.destroy();
      return;
    }
    const upstream = createConnection(target);
    pairs.add(client);
    pairs.add(upstream);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      pairs.delete(client);
      pairs.delete(upstream);
    };
    client.on("error", drop).on("close", drop);
    upstream.on("error", drop).on("close", drop);
    client.on("data", (chunk: Buffer) => {
      if (breakNext) {
        breakNext = false;
        broken++;
        client.resetAndDestroy();
        drop();
        return;
      }
      if (!upstream.write(chunk)) client.pause();
    });
    client.on("end", () => upstream.end());
    upstream.on("drain", () => client.resume());
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    get broken() {
      return broken;
    },
    cut() {
      open = false;
      for (const socket of pairs) socket.destroy();
      pairs.clear();
    },
    breakNextWrite() {
      breakNext = true;
    },
    restore() {
      open = true;
    },
    close() {
      open = false;
      for (const socket of pairs) socket.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
