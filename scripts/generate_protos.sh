#!/bin/sh
# Regenerate the committed gRPC stubs (needs grpcio-tools): the runtime protocol
# (src/otel_neuron/runtime/runtime.proto) and the kubelet's PodResources API v1
# (src/otel_neuron/kubernetes/podresources.proto). Run from anywhere; commit each .proto together
# with its generated _pb2.py, _pb2.pyi and _pb2_grpc.py. The stubs demand at least the grpcio and
# protobuf versions of the grpcio-tools that made them: keep those no newer than pyproject.toml's
# minimums (PYTHON=/path/to/python with that grpcio-tools).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-"$root/.venv/bin/python"}
[ -x "$python" ] || python=python3
cd "$root/src"
for proto in otel_neuron/runtime/runtime.proto otel_neuron/kubernetes/podresources.proto; do
  "$python" -m grpc_tools.protoc -I. --python_out=. --grpc_python_out=. --pyi_out=. "$proto"
  echo "generated src/${proto%.proto}_pb2{,_grpc}.py{,i}"
done
