#!/usr/bin/env python3
"""Generates keyward's Python gRPC modules (keys, settings, Envoy ext_authz) from ../../../proto.

    python3 gen.py [OUT_DIR] [EXTRA_PROTOC_OPTION ...]

OUT_DIR defaults to ./gen next to this script; client.py looks there. Uses grpc_tools.protoc when
it is installed (pip install grpcio-tools), otherwise protoc with grpc_python_plugin (Debian/Ubuntu:
apt install protobuf-compiler protobuf-compiler-grpc libprotobuf-dev; libprotobuf-dev provides the
google/protobuf/*.proto imports).
"""
import importlib.util
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_ROOT = os.path.normpath(os.path.join(HERE, "..", "..", "..", "proto"))
PROTOS = [
    "keyward/v1/keys.proto",
    "keyward/v1/settings.proto",
    # envoy.service.auth.v3.Authorization (ext_authz) and what it imports
    "envoy/service/auth/v3/external_auth.proto",
    "envoy/service/auth/v3/attribute_context.proto",
    "envoy/config/core/v3/base.proto",
    "envoy/config/core/v3/address.proto",
    "envoy/type/v3/http_status.proto",
    "google/rpc/status.proto",
]


def main(argv):
    out = os.path.abspath(argv[1]) if len(argv) > 1 else os.path.join(HERE, "gen")
    args = ["-I", PROTO_ROOT, "--python_out=" + out, "--grpc_python_out=" + out, *argv[2:], *PROTOS]
    os.makedirs(out, exist_ok=True)
    if importlib.util.find_spec("grpc_tools") is not None:
        # grpcio-tools bundles protoc, the gRPC plugin and the well-known .proto files.
        command = [sys.executable, "-m", "grpc_tools.protoc", *args]
    else:
        protoc, plugin = shutil.which("protoc"), shutil.which("grpc_python_plugin")
        if not protoc or not plugin:
            sys.exit("gen.py: need grpcio-tools, or protoc and grpc_python_plugin on PATH")
        command = [protoc, "--plugin=protoc-gen-grpc_python=" + plugin, *args]
    result = subprocess.run(command)
    if result.returncode != 0:
        sys.exit("gen.py: protoc failed (exit %d)" % result.returncode)
    print("generated Python modules in " + out)


if __name__ == "__main__":
    main(sys.argv)
