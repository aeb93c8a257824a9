// A foreign gRPC client for interop tests: Debian's python3-grpcio, with stubs
// generated at test time from proto/ by the Python client example's generator
// (examples/clients/python/gen.py: Debian's protoc + grpc_python_plugin, or
// grpc_tools.protoc when that is installed), so the tests and the example share
// one way to generate. Uses /usr/bin/python3, not a pyenv or virtualenv
// interpreter, because the Debian packages live there. Missing tools skip the
// tests with a warning, except under CI, where that is an error.
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { create, toBinary } from "@bufbuild/protobuf";
import {
  FileDescriptorSetSchema,
  file_google_protobuf_any,
  file_google_protobuf_duration,
  file_google_protobuf_field_mask,
  file_google_protobuf_struct,
  file_google_protobuf_timestamp,
  file_google_protobuf_wrappers,
} from "@bufbuild/protobuf/wkt";

const run = promisify(execFile);

export const PYTHON = "/usr/bin/python3";
/** The Python client example; its gen.py generates the stubs. */
export const PYTHON_EXAMPLE_DIR = fileURLToPath(new URL("../../examples/clients/python", import.meta.url));
export const PYTHON_APT_PACKAGES = "python3-grpcio python3-protobuf protobuf-compiler protobuf-compiler-grpc";

// google/protobuf/*.proto ship in libprotobuf-dev, which protobuf-compiler only
// recommends; hand protoc the descriptors protobuf-es carries instead.
const WELL_KNOWN = [
  file_google_protobuf_any,
  file_google_protobuf_duration,
  file_google_protobuf_field_mask,
  file_google_protobuf_struct,
  file_google_protobuf_timestamp,
  file_google_protobuf_wrappers,
];

export interface PythonGrpc {
  /** Directory holding the generated *_pb2.py / *_pb2_grpc.py modules. */
  stubsDir: string;
  /** Environment for running Python with the stubs importable (PYTHONPATH). */
  env: Record<string, string>;
  /** Runs a Python script with the stubs importable; resolves with stdout. */
  runScript(script: string, env?: Record<string, string>): Promise<string>;
  dispose(): Promise<void>;
}

async function succeeds(file: string, args: string[]): Promise<boolean> {
  try {
    await run(file, args, { timeout: 30_000 });
    return true;
  } catch {
    return false;
  }
}

function unavailable(reason: string): undefined {
  const message = `Python gRPC interop unavailable: ${reason} (apt-get install -y ${PYTHON_APT_PACKAGES})`;
  if (process.env.CI) throw new Error(`${message}; the interop test must run in CI`);
  console.warn(`WARNING: ${message}; skipping`);
  return undefined;
}

/**
 * Generates stubs for keyward's keys and settings services and Envoy's ext_authz
 * (everything gen.py covers) into a temporary directory, or returns undefined
 * when the tools are missing.
 */
export async function preparePythonGrpc(): Promise<PythonGrpc | undefined> {
  if (!existsSync(PYTHON)) return unavailable(`${PYTHON} not found`);
  if (!(await succeeds(PYTHON, ["-c", "import grpc, google.protobuf"]))) return unavailable("python3 cannot import grpc and google.protobuf");
  if (!(await succeeds(PYTHON, ["-c", "import grpc_tools.protoc"]))) {
    const plugin = "/usr/bin/grpc_python_plugin";
    if (!existsSync(plugin)) return unavailable(`${plugin} not found`);
    if (!(await succeeds("protoc", ["--version"]))) return unavailable("protoc not found");
  }

  const stubsDir = await mkdtemp(join(tmpdir(), "keyward-py-"));
  const wellKnown = join(stubsDir, "well-known.binpb");
  await writeFile(wellKnown, toBinary(FileDescriptorSetSchema, create(FileDescriptorSetSchema, { file: WELL_KNOWN.map((f) => f.proto) })));
  try {
    await run(PYTHON, [join(PYTHON_EXAMPLE_DIR, "gen.py"), stubsDir, `--descriptor_set_in=${wellKnown}`], { timeout: 60_000 });
  } catch (error) {
    await rm(stubsDir, { recursive: true, force: true });
    throw error;
  }

  const env = { PYTHONPATH: stubsDir, PYTHONDONTWRITEBYTECODE: "1" };
  return {
    stubsDir,
    env,
    async runScript(script, extraEnv = {}) {
      const { stdout } = await run(PYTHON, ["-c", script], {
        timeout: 60_000,
        env: { ...process.env, ...env, ...extraEnv },
      });
      return stdout;
    },
    dispose: () => rm(stubsDir, { recursive: true, force: true }),
  };
}
