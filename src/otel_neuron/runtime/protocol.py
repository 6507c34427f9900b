"""The runtime protocol's version (runtime.proto), shared by the runtimes that serve snapshots and
the monitor that reads them: a snapshot says which version made it, and the monitor reads only its own."""

from __future__ import annotations

PROTOCOL_VERSION = 1
