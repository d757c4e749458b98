"""nftables tables inside a namespace: each table is loaded whole, in one ``nft -f`` transaction.

One owner per table (STYLE.md, after Calico Felix): the renderer produces the complete table text and
this module replaces it atomically, never editing single rules in place.

How: libnftables (the library the ``nft`` command is made of, same parser, same transaction) called
from a short-lived thread that has joined the namespace, so its netlink socket is made there. That is
a few milliseconds a table where ``ip netns exec NS nft`` costs a process, a mount namespace and a
sysfs remount: twenty tables took half a second. Without the library, the command is used.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import subprocess
import threading
from typing import Final

from acknet.errors import DataplaneError

NETNS_RUN_DIR: Final = "/run/netns"
_CLONE_NEWNET: Final = 0x40000000
_THREAD_NETNS: Final = "/proc/thread-self/ns/net"


def _load_libnftables() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("nftables")
    if name is None:
        return None
    try:
        lib = ctypes.CDLL(name, use_errno=True)
    except OSError:
        return None
    lib.nft_ctx_new.restype = ctypes.c_void_p
    lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
    lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
    lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
    lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
    lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    return lib


_lib = _load_libnftables()
_libc = ctypes.CDLL(None, use_errno=True)


def _run_in_netns(netns: str, command: str) -> tuple[int, str, str]:
    """(status, output, error) of one libnftables run inside ``netns``, from a thread that ends after."""
    assert _lib is not None
    lib = _lib
    box: dict[str, object] = {}

    def run() -> None:
        try:
            fd = os.open(os.path.join(NETNS_RUN_DIR, netns), os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc.setns(fd, _CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns {netns}: {os.strerror(err)}")
                if os.stat(_THREAD_NETNS).st_ino != os.fstat(fd).st_ino:
                    raise OSError(errno.EINVAL, f"setns did not move the thread into {netns}")
            finally:
                os.close(fd)
            ctx = lib.nft_ctx_new(0)
            if not ctx:
                raise OSError(errno.ENOMEM, "nft_ctx_new failed")
            try:
                lib.nft_ctx_buffer_output(ctx)
                lib.nft_ctx_buffer_error(ctx)
                status = lib.nft_run_cmd_from_buffer(ctx, command.encode())
                out = (lib.nft_ctx_get_output_buffer(ctx) or b"").decode()
                err_text = (lib.nft_ctx_get_error_buffer(ctx) or b"").decode()
            finally:
                lib.nft_ctx_free(ctx)
            box["result"] = (status, out, err_text)
        except BaseException as exc:
            box["error"] = exc

    # A thread of its own, never the caller's: it is left in the namespace and then ends.
    thread = threading.Thread(target=run, name="acknet-nft", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    result: tuple[int, str, str] = box["result"]  # type: ignore[assignment]
    return result


def _nft(netns: str, args: list[str], script: str | None, what: str) -> str:
    if _lib is not None:
        command = script if args == ["-f", "-"] and script is not None else " ".join(args)
        try:
            status, out, err_text = _run_in_netns(netns, command)
        except OSError as exc:
            raise DataplaneError(what, f"namespace {netns}", exc.errno, str(exc)) from exc
        if status != 0:
            raise DataplaneError(what, f"namespace {netns}", detail=err_text.strip()[:2000])
        return out
    try:
        result = subprocess.run(
            ["ip", "netns", "exec", netns, "nft", *args],
            input=script,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DataplaneError(what, f"namespace {netns}", detail=str(exc)) from exc
    if result.returncode != 0:
        raise DataplaneError(what, f"namespace {netns}", detail=result.stderr.strip()[:2000])
    return result.stdout


def load_script(netns: str, script: str, table: str) -> None:
    """Runs an nft script (which replaces ``table`` whole) in one transaction inside ``netns``."""
    _nft(netns, ["-f", "-"], script, f"load nftables table {table}")


def delete_table(netns: str, family: str, table: str) -> None:
    """Deletes a table if it exists (``destroy`` needs nft 1.0.8; Debian 12 has 1.0.6)."""
    listing = _nft(netns, ["list", "tables"], None, "list nftables tables")
    if f"table {family} {table}" in listing.splitlines():
        _nft(netns, ["delete", "table", family, table], None, f"delete nftables table {family} {table}")


def list_ruleset(netns: str) -> str:
    return _nft(netns, ["list", "ruleset"], None, "list nftables ruleset")
