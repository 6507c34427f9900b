"""The kubelet's PodResources API v1 (podresources.proto) and its generated gRPC stubs; the allocation
it gives (allocation.py, no gRPC).

Read through otel_neuron.sources.kubelet; regenerate the stubs with scripts/generate_protos.sh.
"""

# Where the kubelet serves PodResources (the --kubernetes default).
KUBELET_SOCKET = "/var/lib/kubelet/pod-resources/kubelet.sock"
