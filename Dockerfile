# The otel-neuron image for deploy/kubernetes. Untested: the machines this project is built on have
# no container runtime, so this file has never been built here. Build and try it on a real host:
#   docker build -t <registry>/otel-neuron:0.1.0 .
FROM python:3.12-slim

# No .pyc written at run time (the root filesystem is read-only in the DaemonSet); output unbuffered.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /build
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install . && rm -rf /build
WORKDIR /

# The user is left as root on purpose: the kubelet's PodResources socket accepts only root (see
# deploy/kubernetes/base/daemonset.yaml, which also drops every capability).
EXPOSE 9464
ENTRYPOINT ["otel-neuron-monitor"]
