// The transport ceiling: an empty unary gRPC handler on a raw node:http2
// server, framed as keyward's lean path frames a reply (5-byte prefix, an
// empty message, trailers grpc-status 0). Nothing is decoded or decided, so it
// is the most any unary handler on node:http2 can do on this machine.
import { createServer, type Http2Server, type ServerHttp2Stream } from "node:http2";
import type { AddressInfo } from "node:net";
import { retainTickShape } from "../../src/retain-shapes.js";

const RESPONSE_HEADERS = { ":status": 200, "content-type": "application/grpc" };
const OK_TRAILERS = { "grpc-status": "0" };
// An empty message: compressed flag 0, length 0.
const EMPTY_FRAME = Buffer.alloc(5);

function sendTrailers(this: ServerHttp2Stream): void {
  this.sendTrailers(OK_TRAILERS);
}
function onEnd(this: ServerHttp2Stream): void {
  this.respond(RESPONSE_HEADERS, { waitForTrailers: true });
  this.once("wantTrailers", sendTrailers);
  this.end(EMPTY_FRAME);
}
function ignore(): void {}

export interface CeilingServer {
  readonly server: Http2Server;
  listen(host: string, port: number): Promise<AddressInfo>;
  close(): Promise<void>;
}

export function createCeilingServer(): CeilingServer {
  // As keyward does at start: else a V8 watchdog collection while the bench
  // idles this server would slow its nextTick for good (src/retain-shapes.ts).
  retainTickShape();
  // Same stream limit as keyward's server, so h2load's -m behaves the same on both.
  const server = createServer({ settings: { maxConcurrentStreams: 1000 } });
  server.on("stream", (stream: ServerHttp2Stream) => {
    stream.on("error", ignore);
    // Read the request body to its end, as a real handler must, then answer.
    stream.on("data", ignore);
    stream.on("end", onEnd);
  });
  server.on("session", (session) => session.on("error", ignore));
  return {
    server,
    listen(host, port) {
      return new Promise((resolve, reject) => {
        server.once("error", reject);
        server.listen({ host, port }, () => resolve(server.address() as AddressInfo));
      });
    },
    close() {
      return new Promise((resolve) => {
        server.close(() => resolve());
        // Sessions h2load left open would hold close() forever.
        setTimeout(resolve, 1000).unref();
      });
    },
  };
}
