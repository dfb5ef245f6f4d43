"""Where the benchmarks look for Banking77 (``benchmarks/banking77.py``): the variable
wins, and a missing file stops a run with where the data comes from, not a traceback."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

_PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "banking77.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_bench_banking77", _PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_variable_names_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    target = tmp_path / "b77.jsonl"
    monkeypatch.setenv("PARACACHE_BANKING77", str(target))
    assert _load().banking77_path() == target


def test_a_missing_file_says_where_banking77_comes_from(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("PARACACHE_BANKING77", raising=False)
    module = _load()
    with pytest.raises(SystemExit) as info:
        module.require(tmp_path / "absent.jsonl")
    message = str(info.value)
    assert "absent.jsonl" in message
    assert "PolyAI-LDN/task-specific-datasets" in message and "CC BY 4.0" in message
    present = tmp_path / "present.jsonl"
    present.write_text('{"text": "hi", "intent": "x"}\n', encoding="utf-8")
    assert module.require(present) == present
