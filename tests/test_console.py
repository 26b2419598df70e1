"""Output width: 120 columns in logs and pipes (rich's 80 would wrap tables and notices), $COLUMNS wins."""

from __future__ import annotations

import pytest

from mathforge.console import stderr_console, stdout_console


def test_logs_and_pipes_get_120_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    assert stderr_console().width == 120 and stdout_console().width == 120


def test_columns_from_the_environment_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "97")
    assert stderr_console().width == 97 and stdout_console().width == 97
