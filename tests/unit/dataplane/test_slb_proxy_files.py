"""What apply/slb_proxy.py writes for a CLB's layer-7 proxy: its files, private, rewritten only on change.
No process is started here (the live tests do that, in namespaces)."""

from __future__ import annotations

import stat
from pathlib import Path

from acknet.dataplane.apply import slb_proxy
from acknet.dataplane.render.slb_l7 import ProxyConfig


def config(folder: Path, conf: str = "events {}\n") -> ProxyConfig:
    return ProxyConfig(
        "pub", "emu-slb-pub", str(folder), conf, (("https_443.crt", "CRT"), ("https_443.key", "KEY"))
    )


def test_files_are_written_private_and_only_when_they_change(tmp_path: Path) -> None:
    folder = tmp_path / "slb" / "emu-slb-pub"
    assert slb_proxy.write_files(config(folder)) is True
    assert (folder / "nginx.conf").read_text() == "events {}\n"
    assert (folder / "https_443.key").read_text() == "KEY" and (folder / "tmp").is_dir()
    for path in (folder, folder / "https_443.key", folder / "nginx.conf"):
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path  # nothing for group or others
    assert slb_proxy.write_files(config(folder)) is False  # same text: nothing to reload
    assert slb_proxy.write_files(config(folder, "events { worker_connections 8; }\n")) is True
    assert not list(folder.glob("*.new"))


def test_the_pid_label_names_the_namespace_and_nothing_is_adopted_without_a_pid_file(tmp_path: Path) -> None:
    assert slb_proxy.label_of("emu-slb-pub") == "slb-proxy.emu-slb-pub"
    assert slb_proxy.adopt(config(tmp_path), tmp_path / "pids") is None
    (tmp_path / "pids").mkdir()
    (tmp_path / "pids" / "slb-proxy.emu-slb-pub.pid").write_text("999999999\nemu-slb-pub\n")
    assert slb_proxy.adopt(config(tmp_path), tmp_path / "pids") is None  # no such process
