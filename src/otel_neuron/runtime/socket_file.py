"""Unix socket files that appear with their final mode, never connectable by others even for a moment.

bind() creates a socket file with mode 0777 less the umask, so a chmod after it leaves a moment in
which others may connect (anyone at all under umask 000). Setting the umask around bind() would
race with every other thread creating files, as the umask belongs to the whole process. Instead
the socket is bound in a fresh directory next to its path that only its owner may enter, given its
mode there, and renamed into place: at its path it is only ever seen with its final mode, listening.

    with socket_file("/run/neuron.sock", 0o600) as private_path:
        server.bind_and_listen(private_path)
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator

# sockaddr_un.sun_path holds 108 bytes including the terminating NUL.
MAX_SOCKET_PATH = 107
_PRIVATE_NAME = "s"


@contextlib.contextmanager
def socket_file(path: str, mode: int) -> Iterator[str]:
    """Yields where to bind and listen; when the block ends, the socket bound there gets `mode` and
    is moved to `path` (replacing what is there). OSError, naming `path`, when that cannot be done;
    the caller then closes its socket. Nothing is left behind but the socket at `path`."""
    path = os.path.abspath(path)
    directory = _private_directory(path)
    private_path = os.path.join(directory, _PRIVATE_NAME)
    try:
        os.chmod(directory, 0o700)  # mkdtemp's mode is 0700 less the umask: never more
        if len(os.fsencode(private_path)) > MAX_SOCKET_PATH:
            raise OSError(
                f"cannot create the socket {path}: its directory's path is too long"
                f" (a unix socket path holds {MAX_SOCKET_PATH} bytes, and {private_path} is needed first)"
            )
        yield private_path
        try:
            os.chmod(private_path, mode)
            os.rename(private_path, path)
        except OSError as error:
            raise OSError(f"cannot create the socket {path}: {error.strerror}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(private_path)  # bound but not moved into place
        os.rmdir(directory)


def _private_directory(path: str) -> str:
    """A new directory beside `path` (so a rename moves the socket into place)."""
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        raise OSError(f"cannot create the socket {path}: no such directory {parent}")
    try:
        return tempfile.mkdtemp(prefix=".", dir=parent)
    except OSError as error:
        raise OSError(f"cannot create the socket {path}: {error.strerror}") from None
