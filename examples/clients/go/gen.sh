#!/usr/bin/env bash
# Generates the Go messages and gRPC client for keyward.v1.KeyService from
# ../../../proto/keyward/v1/keys.proto into gen/keywardv1 (package keywardv1).
#
#   ./gen.sh [MODULE_ROOT]     # default: this directory
#
# Needs protoc, protoc-gen-go and protoc-gen-go-grpc on PATH:
#   go install google.golang.org/protobuf/cmd/protoc-gen-go@latest
#   go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@latest
# (Debian/Ubuntu: apt install protobuf-compiler protoc-gen-go protoc-gen-go-grpc)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here}"
module=keyward.example/client
# keyward's protos do not set go_package; map the file to a package of this module instead.
opts="module=$module,Mkeyward/v1/keys.proto=$module/gen/keywardv1"
protoc -I "$here/../../../proto" \
  --go_out="$out" --go_opt="$opts" \
  --go-grpc_out="$out" --go-grpc_opt="$opts" \
  keyward/v1/keys.proto
