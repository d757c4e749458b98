"""Shared test helpers: the path of ../shared and YAML sources built inline."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def shared_dir() -> Path:
    return Path(os.environ.get("ACKNET_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared() -> Path:
    path = shared_dir()
    if not path.is_dir():
        pytest.fail(f"../shared is missing at {path}; set ACKNET_SHARED")
    return path
