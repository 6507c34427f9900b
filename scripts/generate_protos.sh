#!/bin/sh
# Regenerate the committed gRPC stubs of the runtime protocol (needs grpcio-tools).
# Run from anywhere; commit the two generated files together with runtime.proto.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-"$root/.venv/bin/python"}
[ -x "$python" ] || python=python3
cd "$root/src"
"$python" -m grpc_tools.protoc -I. --python_out=. --grpc_python_out=. --pyi_out=. \
  otel_neuron/runtime/runtime.proto
echo "generated src/otel_neuron/runtime/runtime_pb2{,_grpc}.py{,i}"
