"""Making sockets inside named network namespaces from one process.

A socket keeps the network namespace it was created in, so one process can serve or probe every pod:
switch the calling thread into the pod's namespace, make the socket, switch back. ``setns`` with
``CLONE_NEWNET`` moves only the calling thread, so other threads never see the switch; the switch back
is verified, because a thread left in a pod's namespace would make every later socket there.
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from acknet.errors import DataplaneError

NETNS_RUN_DIR = Path("/var/run/netns")
_THREAD_NETNS = "/proc/thread-self/ns/net"
_CLONE_NEWNET = 0x40000000
# os.setns arrives only in Python 3.12; libc's setns(2) is the same call.
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


class HomeNamespaceLost(DataplaneError):
    """The thread could not return to its own namespace; it must not make another socket."""


def _netns_identity(path: str | int | Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


class NetnsSwitcher:
    """Keeps handles on named namespaces so that many sockets can be made with two setns calls each.

    Use it from the thread that created it: "home" is that thread's namespace at creation.
    """

    def __init__(self, run_dir: Path = NETNS_RUN_DIR) -> None:
        self._run_dir = run_dir
        self._home = os.open(_THREAD_NETNS, os.O_RDONLY | os.O_CLOEXEC)
        self._home_id = _netns_identity(self._home)
        self._fds: dict[str, int] = {}

    def _fd(self, name: str) -> int:
        fd = self._fds.get(name)
        if fd is None:
            if not name or "/" in name or name in {".", ".."}:
                raise DataplaneError("open network namespace", repr(name), errno.EINVAL, "not a netns name")
            try:
                fd = os.open(self._run_dir / name, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as exc:
                raise DataplaneError("open network namespace", name, exc.errno) from exc
            self._fds[name] = fd
        return fd

    @contextmanager
    def entered(self, name: str) -> Iterator[None]:
        """Run the block with this thread in namespace ``name``; always come back and check it."""
        fd = self._fd(name)
        try:
            _setns(fd)
        except OSError as exc:
            raise DataplaneError("enter network namespace", name, exc.errno) from exc
        try:
            yield
        finally:
            self._go_home(name)

    def _go_home(self, name: str) -> None:
        try:
            _setns(self._home)
        except OSError as exc:
            raise HomeNamespaceLost("leave network namespace", name, exc.errno) from exc
        if _netns_identity(_THREAD_NETNS) != self._home_id:
            raise HomeNamespaceLost("leave network namespace", name, None, "thread is not back home")

    def socket(self, name: str, family: int, kind: int, proto: int = 0) -> socket.socket:
        """A new socket that lives in namespace ``name`` whatever thread later uses it."""
        with self.entered(name):
            return socket.socket(family, kind, proto)

    def is_current(self, name: str) -> bool:
        """Whether ``name`` still names the namespace we hold (not deleted, not replaced)."""
        fd = self._fds.get(name)
        if fd is None:
            return False
        try:
            return _netns_identity(self._run_dir / name) == _netns_identity(fd)
        except OSError:
            return False

    def forget(self, name: str) -> None:
        """Drop the handle on ``name`` so that a deleted namespace can really go away."""
        fd = self._fds.pop(name, None)
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        for name in list(self._fds):
            self.forget(name)
        os.close(self._home)

    def __enter__(self) -> NetnsSwitcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def raise_open_file_limit() -> int:
    """Lift the soft descriptor limit to the hard one: one socket per endpoint or probe adds up fast."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft
