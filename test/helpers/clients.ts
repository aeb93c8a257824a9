// Clients for the integration suites: Connect (connect-node transports) and a
// real @grpc/grpc-js client, both exposed as connect-style Client<Service> so
// one suite runs through each.
import { create, fromBinary, toBinary, type DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";

export type ClientKind = "grpc-js" | "connect-grpc" | "connect-json" | "connect-proto-h2" | "grpc-web";

export interface ClientFactory {
  kind: ClientKind;
  client<S extends DescService>(service: S, baseUrl: string): Client<S>;
  close(): void;
}

export function connectTransport(kind: Exclude<ClientKind, "grpc-js">, baseUrl: string): Transport {
  switch (kind) {
    case "connect-grpc":
      return createGrpcTransport({ baseUrl });
    case "connect-json":
      return createConnectTransport({ baseUrl, httpVersion: "1.1", useBinaryFormat: false });
    case "connect-proto-h2":
      return createConnectTransport({ baseUrl, httpVersion: "2", useBinaryFormat: true });
    case "grpc-web":
      return createGrpcWebTransport({ baseUrl, httpVersion: "1.1" });
  }
}

export function connectClients(kind: Exclude<ClientKind, "grpc-js">): ClientFactory {
  return {
    kind,
    client: (service, baseUrl) => createClient(service, connectTransport(kind, baseUrl)),
    close() {},
  };
}

/** A grpc-js client speaking protobuf-es messages; errors become ConnectErrors with the same code. */
export function grpcJsClients(credentials: grpc.ChannelCredentials = grpc.credentials.createInsecure()): ClientFactory {
  const opened: grpc.Client[] = [];
  return {
    kind: "grpc-js",
    client<S extends DescService>(service: S, baseUrl: string): Client<S> {
      const target = baseUrl.replace(/^https?:\/\//, "");
      const channel = new grpc.Client(target, credentials);
      opened.push(channel);
      const impl: Record<string, unknown> = {};
      for (const method of service.methods) {
        if (method.methodKind !== "unary") continue;
        impl[method.localName] = (request: object, options?: { headers?: Record<string, string>; timeoutMs?: number }) =>
          new Promise((resolve, reject) => {
            const metadata = new grpc.Metadata();
            for (const [k, v] of Object.entries(options?.headers ?? {})) metadata.set(k, v);
            const callOptions: grpc.CallOptions = options?.timeoutMs ? { deadline: Date.now() + options.timeoutMs } : {};
            channel.makeUnaryRequest(
              `/${service.typeName}/${method.name}`,
              (m: object) => Buffer.from(toBinary(method.input, create(method.input, m as never))),
              (b: Buffer) => fromBinary(method.output, b),
              request,
              metadata,
              callOptions,
              (err, value) => {
                if (err) reject(new ConnectError(err.details, err.code as unknown as Code));
                else resolve(value);
              },
            );
          });
      }
      return impl as Client<S>;
    },
    close() {
      for (const c of opened) c.close();
    },
  };
}

/** Runs `p` and returns its ConnectError (or fails the test if it resolves). */
export async function rpcError(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof ConnectError) return e;
    throw e;
  }
  throw new Error("expected the call to fail");
}

export { Code };
