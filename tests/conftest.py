"""Shared test fixtures: the optional benchmark data directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fixtures_models import embedded_dir, embedded_tokenizer, tiny_model_dir  # noqa: F401

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("MATHFORGE_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The benchmark data directory; tests using it skip when it is absent."""
    if not DATA_DIR.is_dir():
        pytest.skip(f"benchmark data not found at {DATA_DIR} (set MATHFORGE_DATA_DIR)")
    return DATA_DIR
