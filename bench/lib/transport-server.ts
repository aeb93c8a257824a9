// keyward's own transport with nothing behind it: the server keyward listens
// with (src/transport/server.ts: protocol sniffing, keyward's HTTP/2
// connection, stream routing) and its lean gRPC path (src/transport/grpc-unary.ts: framing, size
// limit, grpc-timeout, trailers) serving one empty method at the ceiling's
// path. Measured beside the raw ceiling it shows what the serving design costs
// by itself; measured beside Health, Verify and Check, what keyward's work costs.
import type { AddressInfo } from "node:net";
import { retainTickShape } from "../../src/retain-shapes.js";
import { createGrpcUnaryHandler } from "../../src/transport/grpc-unary.js";
import { createKeywardServer } from "../../src/transport/server.js";
import { CEILING_PATH } from "./requests.js";

// An empty message: compressed flag 0, length 0.
const EMPTY_FRAME = Buffer.alloc(5);

export interface TransportServer {
  listen(host: string, port: number): Promise<AddressInfo>;
  close(): Promise<void>;
}

export function createTransportServer(): TransportServer {
  // As keyward does at start (src/retain-shapes.ts), and as the ceiling server does.
  retainTickShape();
  const unary = createGrpcUnaryHandler({
    maxMessageBytes: 4 * 1024 * 1024,
    methods: [
      {
        path: CEILING_PATH,
        decode: () => null,
        handle: () => null,
        encode: () => new Uint8Array(0),
        encodeFrame: () => EMPTY_FRAME,
      },
    ],
  });
  const server = createKeywardServer({
    unary,
    // Only the lean method is measured; anything else is a client error.
    handler: (_req, res) => {
      res.statusCode = 404;
      res.end();
    },
  });
  return {
    listen: (host, port) => server.listen(host, port),
    close: () => server.close(1_000),
  };
}
