"""Fixtures shared by the integration tests: real peers (see peers.py)."""

from peers import prometheus, rotel  # noqa: F401 - fixtures
