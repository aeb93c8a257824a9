// gRPC server reflection (grpc.reflection.v1 and the older v1alpha), for grpcurl,
// Postman, Kreya and friends. Descriptors come from the generated code: the files
// declaring the given services, their transitive imports (google/protobuf/*
// included) and whatever an optional extra registry holds.
//
// Behaviour follows grpc-go: a file request answers with the file first and then
// every transitive dependency not yet sent on this stream; list_services lists
// the given services, sorted. Every failure (unknown name, bad request) is an
// in-band error_response; the stream itself only ends when the client ends it.
import type { DescEnum, DescExtension, DescFile, DescMessage, DescService, Registry } from "@bufbuild/protobuf";
import { toBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code, type ServiceImpl } from "@connectrpc/connect";
import * as v1 from "../gen/grpc/reflection/v1/reflection_pb.js";
import * as v1alpha from "../gen/grpc/reflection/v1alpha/reflection_pb.js";

export interface ReflectionOptions {
  /** Services to list and describe; include the reflection services if they are served too. */
  services: readonly DescService[];
  /** More descriptors to describe (e.g. types carried in Any); not listed as services. */
  registry?: Registry;
}

export interface ReflectionServices {
  v1: ServiceImpl<typeof v1.ServerReflection>;
  v1alpha: ServiceImpl<typeof v1alpha.ServerReflection>;
}

/** The reflection service descriptors, for `services` and for routing. */
export const reflectionServiceDescs: readonly DescService[] = [v1.ServerReflection, v1alpha.ServerReflection];

// The two versions have the same messages under different packages; the core works
// on either request shape and answers with a oneof value both accept.
type MessageRequest = v1.ServerReflectionRequest["messageRequest"] | v1alpha.ServerReflectionRequest["messageRequest"];

type MessageResponse =
  | { case: "fileDescriptorResponse"; value: { fileDescriptorProto: Uint8Array[] } }
  | { case: "allExtensionNumbersResponse"; value: { baseTypeName: string; extensionNumber: number[] } }
  | { case: "listServicesResponse"; value: { service: { name: string }[] } }
  | { case: "errorResponse"; value: { errorCode: number; errorMessage: string } };

interface DescriptorIndex {
  serviceNames: string[];
  fileByName(name: string): DescFile | undefined;
  fileBySymbol(name: string): DescFile | undefined;
  /** Undefined when the type is not a known message. */
  extensionsOf(typeName: string): Map<number, DescFile> | undefined;
  encode(file: DescFile): Uint8Array;
}

export function createReflectionServices(options: ReflectionOptions): ReflectionServices {
  const index = buildIndex(options);
  return {
    v1: {
      async *serverReflectionInfo(requests) {
        const sent = new Set<string>();
        for await (const request of requests) {
          yield { validHost: request.host, originalRequest: request, messageResponse: answer(index, request.messageRequest, sent) };
        }
      },
    },
    v1alpha: {
      async *serverReflectionInfo(requests) {
        const sent = new Set<string>();
        for await (const request of requests) {
          yield { validHost: request.host, originalRequest: request, messageResponse: answer(index, request.messageRequest, sent) };
        }
      },
    },
  };
}

function answer(index: DescriptorIndex, request: MessageRequest, sent: Set<string>): MessageResponse {
  try {
    switch (request.case) {
      case "listServices":
        return { case: "listServicesResponse", value: { service: index.serviceNames.map((name) => ({ name })) } };
      case "fileByFilename": {
        const file = index.fileByName(request.value);
        return file ? filesResponse(index, file, sent) : notFound(`file not found: ${request.value}`);
      }
      case "fileContainingSymbol": {
        const file = index.fileBySymbol(trimDot(request.value));
        return file ? filesResponse(index, file, sent) : notFound(`symbol not found: ${request.value}`);
      }
      case "fileContainingExtension": {
        const { containingType, extensionNumber } = request.value;
        const file = index.extensionsOf(trimDot(containingType))?.get(extensionNumber);
        return file ? filesResponse(index, file, sent) : notFound(`extension not found: ${containingType}(${extensionNumber})`);
      }
      case "allExtensionNumbersOfType": {
        const typeName = trimDot(request.value);
        const extensions = index.extensionsOf(typeName);
        if (!extensions) return notFound(`type not found: ${request.value}`);
        return {
          case: "allExtensionNumbersResponse",
          value: { baseTypeName: typeName, extensionNumber: [...extensions.keys()].sort((a, b) => a - b) },
        };
      }
      default:
        return error(Code.InvalidArgument, "no message_request set");
    }
  } catch {
    return error(Code.Internal, "internal error");
  }
}

/** The file itself, always, then its transitive imports not sent yet on this stream (breadth first). */
function filesResponse(index: DescriptorIndex, file: DescFile, sent: Set<string>): MessageResponse {
  const out: Uint8Array[] = [index.encode(file)];
  sent.add(file.proto.name);
  const queue = [...file.dependencies];
  for (let dep = queue.shift(); dep !== undefined; dep = queue.shift()) {
    if (sent.has(dep.proto.name)) continue;
    sent.add(dep.proto.name);
    out.push(index.encode(dep));
    queue.push(...dep.dependencies);
  }
  return { case: "fileDescriptorResponse", value: { fileDescriptorProto: out } };
}

function notFound(message: string): MessageResponse {
  return error(Code.NotFound, message);
}

function error(code: Code, message: string): MessageResponse {
  return { case: "errorResponse", value: { errorCode: code, errorMessage: message } };
}

function trimDot(name: string): string {
  return name.startsWith(".") ? name.slice(1) : name;
}

function buildIndex(options: ReflectionOptions): DescriptorIndex {
  const files = new Map<string, DescFile>();
  const symbols = new Map<string, DescFile>();
  const extensions = new Map<string, Map<number, DescFile>>();
  const encoded = new WeakMap<DescFile, Uint8Array>();

  const addSymbol = (name: string, file: DescFile) => {
    if (!symbols.has(name)) symbols.set(name, file);
  };
  const addEnum = (e: DescEnum, file: DescFile) => {
    addSymbol(e.typeName, file);
    // Enum values are scoped like siblings of their enum.
    const scope = e.parent?.typeName ?? file.proto.package;
    for (const value of e.values) addSymbol(scope === "" ? value.name : `${scope}.${value.name}`, file);
  };
  const addExtension = (x: DescExtension, file: DescFile) => {
    addSymbol(x.typeName, file);
    let byNumber = extensions.get(x.extendee.typeName);
    if (!byNumber) extensions.set(x.extendee.typeName, (byNumber = new Map()));
    if (!byNumber.has(x.number)) byNumber.set(x.number, file);
  };
  const addMessage = (m: DescMessage, file: DescFile) => {
    addSymbol(m.typeName, file);
    if (!extensions.has(m.typeName)) extensions.set(m.typeName, new Map());
    for (const member of m.members) addSymbol(`${m.typeName}.${member.name}`, file);
    for (const nested of m.nestedMessages) addMessage(nested, file);
    for (const nested of m.nestedEnums) addEnum(nested, file);
    for (const nested of m.nestedExtensions) addExtension(nested, file);
  };
  const addFile = (file: DescFile) => {
    if (files.has(file.proto.name)) return;
    files.set(file.proto.name, file);
    for (const s of file.services) {
      addSymbol(s.typeName, file);
      for (const method of s.methods) addSymbol(`${s.typeName}.${method.name}`, file);
    }
    for (const m of file.messages) addMessage(m, file);
    for (const e of file.enums) addEnum(e, file);
    for (const x of file.extensions) addExtension(x, file);
    for (const dep of file.dependencies) addFile(dep);
  };

  for (const service of options.services) addFile(service.file);
  const registry = options.registry;
  if (registry) {
    if ("files" in registry) for (const file of (registry as { files: Iterable<DescFile> }).files) addFile(file);
    for (const desc of registry) addFile(desc.file);
  }

  return {
    serviceNames: [...new Set(options.services.map((s) => s.typeName))].sort(),
    fileByName: (name) => files.get(name),
    fileBySymbol: (name) => symbols.get(name),
    extensionsOf: (typeName) => extensions.get(typeName),
    encode(file) {
      let bytes = encoded.get(file);
      if (!bytes) encoded.set(file, (bytes = toBinary(FileDescriptorProtoSchema, file.proto)));
      return bytes;
    },
  };
}
