"""socket_file: a unix socket reaches its path already listening with its final mode, or not at all."""

from __future__ import annotations

import os
import socket
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from otel_neuron.runtime.socket_file import MAX_SOCKET_PATH, socket_file


@pytest.fixture
def short_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="on-", dir="/tmp") as directory:
        yield Path(directory)


def test_the_socket_appears_at_its_path_with_its_mode_and_accepts(short_dir: Path) -> None:
    path = short_dir / "app.sock"
    old_umask = os.umask(0)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
            with socket_file(str(path), 0o640) as private_path:
                server.bind(private_path)
                server.listen()
                assert not path.exists()
                private_dir = os.path.dirname(private_path)
                assert stat.S_IMODE(os.stat(private_dir).st_mode) == 0o700
            assert stat.S_IMODE(os.lstat(path).st_mode) == 0o640
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                client.connect(str(path))
    finally:
        os.umask(old_umask)
    assert os.listdir(short_dir) == ["app.sock"]


def test_a_failed_bind_leaves_nothing_behind(short_dir: Path) -> None:
    with pytest.raises(ConnectionError), socket_file(str(short_dir / "app.sock"), 0o600) as private_path:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
            server.bind(private_path)
        raise ConnectionError("the server could not start")
    assert os.listdir(short_dir) == []


def test_a_directory_too_long_for_the_private_path_is_one_clear_error(short_dir: Path) -> None:
    deep = short_dir / ("d" * (MAX_SOCKET_PATH - len(str(short_dir)) - 8))
    deep.mkdir()
    path = deep / "a.sock"
    assert len(str(path)) <= MAX_SOCKET_PATH  # bindable as such, but not the private path beside it
    with pytest.raises(OSError, match=f"cannot create the socket {path}: its directory's path is too long"):
        with socket_file(str(path), 0o600):
            pytest.fail("no private path should be offered")
    assert os.listdir(deep) == []


def test_a_missing_directory_is_named(short_dir: Path) -> None:
    path = short_dir / "gone" / "app.sock"
    with pytest.raises(OSError, match=f"no such directory {short_dir / 'gone'}$"):
        with socket_file(str(path), 0o600):
            pytest.fail("no private path should be offered")
