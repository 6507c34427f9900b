"""The kubelet's PodResources API v1 (podresources.proto) and its generated gRPC stubs.

Read through otel_neuron.sources.kubelet; regenerate the stubs with scripts/generate_protos.sh.
"""
