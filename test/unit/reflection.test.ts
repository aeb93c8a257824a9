import { createRegistry, createFileRegistry, fromBinary, create, type DescService, type MessageInitShape } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema, FileDescriptorSetSchema, file_google_protobuf_duration, type FileDescriptorProto } from "@bufbuild/protobuf/wkt";
import { createClient, createRouterTransport, type Client } from "@connectrpc/connect";
import { beforeAll, describe, expect, it } from "vitest";
import { Authorization } from "../../src/gen/envoy/service/auth/v3/external_auth_pb.js";
import { Health } from "../../src/gen/grpc/health/v1/health_pb.js";
import * as v1 from "../../src/gen/grpc/reflection/v1/reflection_pb.js";
import * as v1alpha from "../../src/gen/grpc/reflection/v1alpha/reflection_pb.js";
import { KeyService } from "../../src/gen/keyward/v1/keys_pb.js";
import { SettingsService } from "../../src/gen/keyward/v1/settings_pb.js";
import { createReflectionServices, reflectionServiceDescs } from "../../src/transport/reflection.js";

const services: DescService[] = [KeyService, SettingsService, Authorization, Health, ...reflectionServiceDescs];

type V1Client = Client<typeof v1.ServerReflection>;
type Request = MessageInitShape<typeof v1.ServerReflectionRequestSchema>;

/** One stream: sends the requests in order, collects every response. */
async function exchange(client: V1Client, requests: Request[]): Promise<v1.ServerReflectionResponse[]> {
  async function* send() {
    yield* requests;
  }
  const out: v1.ServerReflectionResponse[] = [];
  for await (const response of client.serverReflectionInfo(send())) out.push(response);
  return out;
}

function decodeFiles(response: v1.ServerReflectionResponse | v1alpha.ServerReflectionResponse): FileDescriptorProto[] {
  expect(response.messageResponse.case).toBe("fileDescriptorResponse");
  if (response.messageResponse.case !== "fileDescriptorResponse") return [];
  return response.messageResponse.value.fileDescriptorProto.map((bytes) => fromBinary(FileDescriptorProtoSchema, bytes));
}

/**
 * What a reflection client does with the answer: walk each file's imports so that
 * every file follows its dependencies (the server sends the requested file first),
 * then build a registry from the FileDescriptorSet.
 */
function rebuild(files: FileDescriptorProto[]) {
  const byName = new Map(files.map((f) => [f.name, f] as const));
  const ordered: FileDescriptorProto[] = [];
  const seen = new Set<string>();
  const visit = (file: FileDescriptorProto) => {
    if (seen.has(file.name)) return;
    seen.add(file.name);
    for (const dep of file.dependency) {
      const imported = byName.get(dep);
      expect(imported, `${file.name} imports ${dep}, which was not sent`).toBeDefined();
      if (imported) visit(imported);
    }
    ordered.push(file);
  };
  files.forEach(visit);
  return createFileRegistry(create(FileDescriptorSetSchema, { file: ordered }));
}

const symbol = (name: string): Request => ({ host: "keyward.test", messageRequest: { case: "fileContainingSymbol", value: name } });

describe("server reflection", () => {
  let client: V1Client;
  let alphaClient: Client<typeof v1alpha.ServerReflection>;

  beforeAll(() => {
    const reflection = createReflectionServices({ services, registry: createRegistry(file_google_protobuf_duration) });
    const transport = createRouterTransport((router) => {
      router.service(v1.ServerReflection, reflection.v1);
      router.service(v1alpha.ServerReflection, reflection.v1alpha);
    });
    client = createClient(v1.ServerReflection, transport);
    alphaClient = createClient(v1alpha.ServerReflection, transport);
  });

  it("lists the given services by full name", async () => {
    const [response] = await exchange(client, [{ host: "h", messageRequest: { case: "listServices", value: "*" } }]);
    expect(response?.validHost).toBe("h");
    expect(response?.originalRequest?.messageRequest).toEqual({ case: "listServices", value: "*" });
    expect(response?.messageResponse.case).toBe("listServicesResponse");
    const names = response?.messageResponse.case === "listServicesResponse" ? response.messageResponse.value.service.map((s) => s.name) : [];
    expect(names).toEqual(
      [
        "envoy.service.auth.v3.Authorization",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
        "keyward.v1.KeyService",
        "keyward.v1.SettingsService",
      ],
    );
  });

  it("answers file_containing_symbol with the file and its dependencies, enough to rebuild the service", async () => {
    const [response] = await exchange(client, [symbol("keyward.v1.KeyService")]);
    expect(response?.validHost).toBe("keyward.test");
    expect(response?.originalRequest?.messageRequest).toEqual({ case: "fileContainingSymbol", value: "keyward.v1.KeyService" });
    const files = decodeFiles(response!);
    expect(files[0]?.name).toBe("keyward/v1/keys.proto");
    expect(files.map((f) => f.name).sort()).toEqual(
      ["google/protobuf/field_mask.proto", "google/protobuf/timestamp.proto", "keyward/v1/keys.proto"],
    );

    const registry = rebuild(files);
    const verify = registry.getService("keyward.v1.KeyService")?.methods.find((m) => m.name === "Verify");
    expect(verify?.input.typeName).toBe("keyward.v1.VerifyRequest");
    expect(verify?.output.typeName).toBe("keyward.v1.VerifyResponse");
    expect(verify?.idempotency).toBe(KeyService.method.verify.idempotency);
    expect(registry.getMessage("keyward.v1.ApiKey")?.field.createdAt?.message?.typeName).toBe("google.protobuf.Timestamp");
  });

  it("sends every transitive import of the Envoy protos, decodable as a set", async () => {
    const [response] = await exchange(client, [symbol("envoy.service.auth.v3.Authorization")]);
    const files = decodeFiles(response!);
    const names = new Set(files.map((f) => f.name));
    expect(names.size).toBe(files.length);
    expect(files[0]?.name).toBe("envoy/service/auth/v3/external_auth.proto");
    for (const file of files) {
      for (const dep of file.dependency) expect(names, `${file.name} imports ${dep}`).toContain(dep);
    }
    for (const expected of [
      "envoy/service/auth/v3/attribute_context.proto",
      "envoy/config/core/v3/base.proto",
      "envoy/config/core/v3/address.proto",
      "envoy/type/v3/http_status.proto",
      "google/rpc/status.proto",
      "google/protobuf/any.proto",
      "google/protobuf/struct.proto",
      "google/protobuf/wrappers.proto",
      "google/protobuf/timestamp.proto",
    ]) {
      expect(names).toContain(expected);
    }
    const registry = rebuild(files);
    const check = registry.getService("envoy.service.auth.v3.Authorization")?.methods[0];
    expect(check?.name).toBe("Check");
    expect(check?.input.typeName).toBe("envoy.service.auth.v3.CheckRequest");
    expect(registry.getMessage("envoy.service.auth.v3.AttributeContext.HttpRequest")?.field.headerMap?.number).toBe(13);
  });

  it("sends each file once per stream, but always the requested file", async () => {
    const responses = await exchange(client, [
      symbol("keyward.v1.KeyService"),
      symbol("keyward.v1.SettingsService"),
      { messageRequest: { case: "fileByFilename", value: "keyward/v1/keys.proto" } },
    ]);
    expect(responses.map((r) => decodeFiles(r).map((f) => f.name))).toEqual([
      ["keyward/v1/keys.proto", "google/protobuf/field_mask.proto", "google/protobuf/timestamp.proto"],
      ["keyward/v1/settings.proto"],
      ["keyward/v1/keys.proto"],
    ]);
    // A new stream starts over.
    const [fresh] = await exchange(client, [symbol("keyward.v1.SettingsService")]);
    expect(decodeFiles(fresh!).map((f) => f.name)).toEqual(["keyward/v1/settings.proto", "google/protobuf/timestamp.proto"]);
  });

  it.each([
    ["keyward.v1.KeyService.Verify", "keyward/v1/keys.proto"],
    ["keyward.v1.VerifyRequest", "keyward/v1/keys.proto"],
    [".keyward.v1.VerifyRequest", "keyward/v1/keys.proto"],
    ["keyward.v1.ApiKey.tenant_id", "keyward/v1/keys.proto"],
    ["keyward.v1.VerifyCode", "keyward/v1/keys.proto"],
    ["keyward.v1.VERIFY_CODE_VALID", "keyward/v1/keys.proto"],
    ["envoy.service.auth.v3.AttributeContext.HttpRequest", "envoy/service/auth/v3/attribute_context.proto"],
    ["envoy.service.auth.v3.CheckResponse.http_response", "envoy/service/auth/v3/external_auth.proto"],
    ["envoy.config.core.v3.HeaderValueOption.HeaderAppendAction", "envoy/config/core/v3/base.proto"],
    ["envoy.config.core.v3.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD", "envoy/config/core/v3/base.proto"],
    ["grpc.health.v1.HealthCheckResponse.ServingStatus", "grpc/health/v1/health.proto"],
    ["google.rpc.Status", "google/rpc/status.proto"],
    ["google.protobuf.Timestamp", "google/protobuf/timestamp.proto"],
    ["google.protobuf.Duration", "google/protobuf/duration.proto"],
  ])("finds the file containing %s", async (name, file) => {
    const [response] = await exchange(client, [symbol(name)]);
    expect(decodeFiles(response!)[0]?.name).toBe(file);
  });

  it("answers unknown names in-band with NOT_FOUND and keeps the stream open", async () => {
    const responses = await exchange(client, [
      symbol("keyward.v1.NoSuchThing"),
      { messageRequest: { case: "fileByFilename", value: "nope.proto" } },
      { messageRequest: { case: "fileContainingExtension", value: { containingType: "keyward.v1.ApiKey", extensionNumber: 1000 } } },
      { messageRequest: { case: "allExtensionNumbersOfType", value: "keyward.v1.Nope" } },
      { messageRequest: { case: "allExtensionNumbersOfType", value: "keyward.v1.ApiKey" } },
      symbol("keyward.v1.KeyService"),
    ]);
    expect(responses).toHaveLength(6);
    for (const response of responses.slice(0, 4)) {
      expect(response.messageResponse.case).toBe("errorResponse");
      if (response.messageResponse.case === "errorResponse") expect(response.messageResponse.value.errorCode).toBe(5);
    }
    expect(responses[0]?.originalRequest?.messageRequest).toEqual({ case: "fileContainingSymbol", value: "keyward.v1.NoSuchThing" });
    expect(responses[4]?.messageResponse).toEqual({
      case: "allExtensionNumbersResponse",
      value: expect.objectContaining({ baseTypeName: "keyward.v1.ApiKey", extensionNumber: [] }),
    });
    expect(decodeFiles(responses[5]!)[0]?.name).toBe("keyward/v1/keys.proto");
  });

  it("answers a request without message_request in-band with INVALID_ARGUMENT", async () => {
    const [response] = await exchange(client, [{ host: "h" }]);
    expect(response?.messageResponse.case).toBe("errorResponse");
    if (response?.messageResponse.case === "errorResponse") expect(response.messageResponse.value.errorCode).toBe(3);
  });

  it("serves v1alpha the same way", async () => {
    async function* send(): AsyncIterable<MessageInitShape<typeof v1alpha.ServerReflectionRequestSchema>> {
      yield { host: "a", messageRequest: { case: "listServices", value: "" } };
      yield { host: "a", messageRequest: { case: "fileContainingSymbol", value: "keyward.v1.KeyService" } };
      yield { host: "a", messageRequest: { case: "fileContainingSymbol", value: "keyward.v1.Missing" } };
    }
    const responses: v1alpha.ServerReflectionResponse[] = [];
    for await (const response of alphaClient.serverReflectionInfo(send())) responses.push(response);

    expect(responses.map((r) => r.validHost)).toEqual(["a", "a", "a"]);
    const list = responses[0]?.messageResponse;
    expect(list?.case === "listServicesResponse" && list.value.service.map((s) => s.name)).toContain("grpc.reflection.v1alpha.ServerReflection");
    const files = decodeFiles(responses[1]!);
    const registry = rebuild(files);
    expect(registry.getService("keyward.v1.KeyService")?.methods.find((m) => m.name === "Verify")?.input.typeName).toBe("keyward.v1.VerifyRequest");
    const missing = responses[2]?.messageResponse;
    expect(missing?.case === "errorResponse" && missing.value.errorCode).toBe(5);
  });
});
