"""Every notebook in notebooks/ runs top to bottom, offline, on the embedded defaults."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
#: Columns of a notebook's Markdown tables that say what the cache did: the saved outputs a
#: reader sees on GitHub must say what a run says now (timings and ids may differ).
VERDICT_COLUMNS = ("question", "cache", "LLM called")


def _verdict_tables(nb: Any) -> list[list[tuple[str, ...]]]:
    """Each Markdown table output with the verdict columns, as rows of those columns."""
    tables = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for out in cell.get("outputs", []):
            text = out.get("data", {}).get("text/markdown", "")
            lines = [line for line in str(text).splitlines() if line.startswith("|")]
            if not lines:
                continue
            header = [h.strip() for h in lines[0].strip("|").split("|")]
            if not all(c in header for c in VERDICT_COLUMNS):
                continue
            at = [header.index(c) for c in VERDICT_COLUMNS]
            rows = [[v.strip() for v in line.strip("|").split("|")] for line in lines[2:]]
            tables.append([tuple(row[i] for i in at) for row in rows])
    return tables


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path: Path, redis_url: str) -> None:
    nb = nbformat.read(path, as_version=4)
    saved = copy.deepcopy(nb)
    env = {"PARACACHE_REDIS_URL": redis_url, "HF_HUB_OFFLINE": "1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        NotebookClient(
            nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": path.parent}}
        ).execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    errors = [
        out
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]
    assert errors == []
    # A deprecation warning in a saved output tells the reader to stop using what the
    # notebook shows: none may appear (a notebook that must keep a deprecated API filters
    # that warning and says why).
    warned = [
        out["text"]
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.get("name") == "stderr" and "DeprecationWarning" in out.get("text", "")
    ]
    assert warned == []
    assert _verdict_tables(nb) == _verdict_tables(saved), "saved outputs are out of date"
    # What a reader sees on GitHub: every cell with output in a run has saved output.
    unsaved = [
        i
        for i, (ran, kept) in enumerate(zip(nb.cells, saved.cells, strict=True))
        if ran.cell_type == "code" and ran.get("outputs") and not kept.get("outputs")
    ]
    assert unsaved == [], f"cells {unsaved} have no saved outputs"
