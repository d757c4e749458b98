"""``acknetd``: the daemon of one emulation. ``python -m acknet.daemon --name N --state DIR``."""

from __future__ import annotations

import argparse
import fcntl
import os
import signal
import sys
import threading
from pathlib import Path

from acknet.api.transport import ApiServer
from acknet.daemon import server
from acknet.daemon.engine import Emulation
from acknet.daemon.launch import SOCKET


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="acknetd")
    parser.add_argument("--name", default="acknet")
    parser.add_argument("--state", type=Path, required=True)
    args = parser.parse_args(argv)
    folder: Path = args.state
    folder.mkdir(parents=True, exist_ok=True)
    lock = (folder / "acknetd.lock").open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"acknetd: another daemon already serves {folder}", file=sys.stderr)
        return 1
    (folder / "acknetd.pid").write_text(f"{os.getpid()}\n")
    emu = Emulation(args.name, folder)
    api = ApiServer(folder / SOCKET)
    server.register(api, emu)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    # The emulation first: a request the API accepts must find the built-in server already there,
    # or the pods it starts would be recorded as served without a socket.
    emu.start()
    api.start()
    stop.wait()
    api.stop()
    (folder / "acknetd.pid").unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
