"""Reading what the user names: files, folders of YAML, standard input."""

from __future__ import annotations

from pathlib import Path

import pytest

from acknet.errors import InvalidInput
from acknet.store.files import read_sources


def test_folder_reads_yaml_files_recursively_in_name_order(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text("b: 1\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.yml").write_text("a: 1\n")
    (tmp_path / "notes.txt").write_text("not yaml")
    names = [Path(s.name).relative_to(tmp_path).as_posix() for s in read_sources([str(tmp_path)])]
    assert names == ["b.yaml", "sub/a.yml"]


def test_every_missing_path_is_reported(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as exc:
        read_sources([str(tmp_path / "x.yaml"), str(tmp_path / "y")])
    assert len(exc.value.diagnostics) == 2


def test_empty_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="holds no YAML files"):
        read_sources([str(tmp_path)])
