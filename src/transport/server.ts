// One listening address for every protocol. In cleartext the first bytes of a
// connection tell HTTP/2 prior knowledge (gRPC, h2c Connect/gRPC-Web) from
// HTTP/1.1 (Connect, gRPC-Web, plain HTTP endpoints); with TLS, ALPN decides.
// HTTP/2 connections are keyward's own (h2/connection.ts): the lean gRPC
// methods are answered there, other RPCs go to connect-node's router on the
// same streams (h2/connect-streams.ts), and the rest (plain HTTP routes) on to
// node:http2 in-process (h2/inner-bridge.ts).
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer as createHttp2Server, type Http2ServerRequest, type Http2ServerResponse, type Http2Session } from "node:http2";
import { createServer as createNetServer, type AddressInfo, type Server as NetServer, type Socket } from "node:net";
import { createServer as createTlsServer, type SecureContextOptions, type Server as TlsServer, type TLSSocket } from "node:tls";
import { encodeGrpcMessage, type GrpcUnaryHandler } from "./grpc-unary.js";
import { H2Code, H2Connection, headerBlock, type H2Stream } from "./h2/connection.js";
import type { H2ConnectHandler } from "./h2/connect-streams.js";
import { createInnerBridge } from "./h2/inner-bridge.js";

export type HttpHandler = (req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse) => void;

export interface ServerOptions {
  /** HTTP/1.1 requests, and HTTP/2 ones neither the lean path nor `rpc` takes (plain HTTP routes; connect-node's adapter). */
  handler: HttpHandler;
  unary: GrpcUnaryHandler;
  /** RPCs answered straight off keyward's HTTP/2 streams through connect-node's router (h2/connect-streams.ts); on HTTP/1.1 `handler` serves them. */
  rpc?: H2ConnectHandler;
  /** Concurrent streams per HTTP/2 connection. */
  maxConcurrentStreams?: number;
  /** Largest header block accepted, bytes. */
  maxHeaderBytes?: number;
  /** Request body bytes the lean path may hold at once per HTTP/2 connection (default 64 MiB). */
  maxHeldBodyBytes?: number;
  /** A connection that sends nothing for this long is closed. */
  idleTimeoutMs?: number;
  /** An error thrown while an HTTP/2 connection was served; that connection is closed, the server goes on. */
  onError?: (error: unknown) => void;
  /** Serve TLS (ALPN h2 and http/1.1) with what this returns; called again on reloadTls(). */
  tls?: () => TlsSettings;
}

export interface TlsSettings {
  context: SecureContextOptions;
  /** Ask for client certificates ("request") or refuse connections without a valid one ("require"). */
  clientAuth: "none" | "request" | "require";
}

export interface KeywardServer {
  listen(host: string, port: number): Promise<AddressInfo>;
  address(): AddressInfo;
  /** Stops accepting, lets in-flight calls finish, and force-closes what remains after graceMs. */
  close(graceMs: number): Promise<void>;
  /** Re-reads the certificate, key and CA for new connections; throws (keeping the old ones) if they are bad. */
  reloadTls(): void;
}

const H2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

const isGrpcContentType = (contentType: string | undefined) =>
  contentType !== undefined && /^application\/grpc(?![-\w])/i.test(contentType);

function ignore(): void {}

export function createKeywardServer(options: ServerOptions): KeywardServer {
  const maxHeaderBytes = options.maxHeaderBytes ?? 16 * 1024;
  const idleTimeoutMs = options.idleTimeoutMs ?? 120_000;
  // HTTP/1.1 connections are handed over by the sniffer, so the http server
  // never listens and its own idle-connection tracking is off: track here
  // which keep-alive sockets are between requests, to close them on drain.
  const http1Active = new Map<Socket, Set<ServerResponse>>();
  let draining = false;
  const http1 = createHttpServer({ maxHeaderSize: maxHeaderBytes, keepAliveTimeout: 5_000 }, (req, res) => {
    const socket = req.socket;
    if (draining) {
      // Arrived after the drain began (a keep-alive race): refuse it unprocessed.
      res.shouldKeepAlive = false;
      res.writeHead(503, { "content-type": "application/json", "retry-after": "1" });
      res.end('{"code":"unavailable","message":"server is shutting down"}');
      return;
    }
    let active = http1Active.get(socket);
    if (active === undefined) http1Active.set(socket, (active = new Set()));
    active.add(res);
    res.once("close", () => {
      active.delete(res);
      if (draining && active.size === 0) socket.end();
    });
    options.handler(req, res);
  });
  const maxConcurrentStreams = options.maxConcurrentStreams ?? 1000;
  // Serves the streams keyward's own HTTP/2 connections pass on (inner-bridge.ts): plain HTTP routes.
  const http2 = createHttp2Server(
    {
      maxSessionMemory: 64,
      maxHeaderListPairs: 256,
      settings: { maxConcurrentStreams, maxHeaderListSize: maxHeaderBytes },
    },
    (req: Http2ServerRequest, res: Http2ServerResponse) => options.handler(req, res),
  );
  const connections = new Set<H2Connection>();
  const headersTooLarge = (stream: H2Stream) => {
    const message = `request headers exceed ${maxHeaderBytes} bytes`;
    // A gRPC client reads a status from trailers, anything else from :status.
    if (isGrpcContentType(stream.headers["content-type"])) {
      stream.sendHeaders(
        headerBlock({ ":status": 200, "content-type": "application/grpc", "grpc-status": "8", "grpc-message": encodeGrpcMessage(message) }),
        true,
      );
    } else {
      stream.sendHeaders(headerBlock({ ":status": 431, "content-type": "text/plain" }), false);
      stream.sendData(Buffer.from(message), true);
    }
    if (!stream.remoteClosed) stream.reset(H2Code.NO_ERROR);
  };

  const sockets = new Set<Socket>();
  const sessions = new Set<Http2Session>();
  http2.on("session", (session: Http2Session) => {
    sessions.add(session);
    session.on("close", () => sessions.delete(session));
    session.on("error", ignore);
  });
  // HTTP/1.1 connections time out when idle. HTTP/2 sessions do not: a session
  // timer is refreshed on every read (a measurable cost per call), and it would
  // cut long-lived health Watch streams; the sniffer already drops connections
  // that never send a request.
  http1.setTimeout(idleTimeoutMs);

  const track = (socket: Socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", ignore);
    socket.setNoDelay(true);
  };
  const toHttp2 = (socket: Socket) => {
    const bridge = createInnerBridge(http2);
    const connection = new H2Connection(socket, {
      maxConcurrentStreams,
      maxHeaderListBytes: maxHeaderBytes,
      maxHeldBodyBytes: options.maxHeldBodyBytes,
      onStream(stream) {
        if (options.unary.accepts(stream.headers)) options.unary.serve(stream);
        else if (options.rpc?.accepts(stream.headers)) options.rpc.serve(stream);
        else bridge.forward(stream);
      },
      onHeadersTooLarge: headersTooLarge,
      onError: options.onError,
      onClose() {
        connections.delete(connection);
        bridge.close();
      },
    });
    connections.add(connection);
    if (draining) connection.shutdown();
    socket.resume();
  };
  const toHttp1 = (socket: Socket) => {
    http1Active.set(socket, new Set());
    socket.once("close", () => http1Active.delete(socket));
    http1.emit("connection", socket);
  };

  // Cleartext, or TLS without ALPN: the first bytes decide.
  const sniff = (socket: Socket) => {
    let seen: Buffer = Buffer.alloc(0);
    const sniffTimer = setTimeout(() => socket.destroy(), Math.min(idleTimeoutMs, 10_000));
    const onData = (chunk: Buffer) => {
      seen = seen.length === 0 ? chunk : Buffer.concat([seen, chunk]);
      const n = Math.min(seen.length, H2_PREFACE.length);
      const isH2 = seen.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
      // Wait for more bytes while a short first chunk could still be either.
      if (isH2 && n < H2_PREFACE.length) return;
      clearTimeout(sniffTimer);
      socket.off("data", onData);
      socket.pause();
      socket.unshift(seen);
      if (isH2) toHttp2(socket);
      else {
        toHttp1(socket);
        socket.resume();
      }
    };
    socket.on("data", onData);
  };

  const tlsSettings = (): SecureContextOptions & { requestCert: boolean; rejectUnauthorized: boolean } => {
    const settings = options.tls!();
    return {
      ...settings.context,
      requestCert: settings.clientAuth !== "none",
      rejectUnauthorized: settings.clientAuth === "require",
    };
  };
  let net: NetServer | TlsServer;
  if (options.tls) {
    const tls = createTlsServer({ ...tlsSettings(), ALPNProtocols: ["h2", "http/1.1"], handshakeTimeout: 10_000 }, (socket: TLSSocket) => {
      track(socket);
      // ALPN already chose the protocol; nothing to sniff.
      if (socket.alpnProtocol === "h2") toHttp2(socket);
      else if (socket.alpnProtocol === "http/1.1") toHttp1(socket);
      else sniff(socket);
    });
    tls.on("tlsClientError", ignore);
    net = tls;
  } else {
    net = createNetServer((socket) => {
      track(socket);
      sniff(socket);
    });
  }

  // Idle keep-alive sockets close now; busy ones answer with "connection: close" and then close.
  const closeIdleHttp1 = () => {
    for (const [socket, active] of http1Active) {
      if (active.size === 0) socket.end();
      else for (const res of active) if (!res.headersSent) res.shouldKeepAlive = false;
    }
  };

  return {
    listen(host, port) {
      return new Promise((resolve, reject) => {
        net.once("error", reject);
        net.listen({ host, port }, () => {
          net.off("error", reject);
          resolve(net.address() as AddressInfo);
        });
      });
    },
    address: () => net.address() as AddressInfo,
    reloadTls() {
      // Client-auth mode is fixed at start; certificates, key and CA can change.
      if (options.tls) (net as TlsServer).setSecureContext(options.tls().context);
    },
    async close(graceMs) {
      if (draining) return;
      draining = true;
      const closed = new Promise<void>((resolve) => net.close(() => resolve()));
      // GOAWAY: clients stop sending new streams; in-flight ones finish.
      for (const connection of connections) connection.shutdown();
      for (const session of sessions) session.close();
      closeIdleHttp1();
      const idle = async () => {
        while (sockets.size > 0) await new Promise((r) => setTimeout(r, 10));
      };
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([idle(), new Promise<void>((r) => (timer = setTimeout(r, graceMs)))]);
      clearTimeout(timer);
      for (const session of sessions) session.destroy();
      for (const socket of sockets) socket.destroy();
      await closed;
    },
  };
}
