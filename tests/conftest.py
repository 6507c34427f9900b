"""Shared by every test: gRPC's core stays quiet on stderr (as the command-line tools keep it)."""

import os

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
