"""Where the benchmarks find Banking77's train split (10,003 questions, 77 intents).

The full split is not in the repository (the package ships a 288-question subset,
``integrations/paracache/data/banking77_demo.jsonl``). The benchmarks read it as JSON lines,
``{"text": ..., "intent": ...}``: Banking77's ``banking_data/train.csv`` (Casanueva et al.
2020, PolyAI-LDN/task-specific-datasets, CC BY 4.0) with its columns ``text,category``
renamed ``text,intent`` and the text stripped. They look for it, in this order, at
``$PARACACHE_BANKING77``, then at ``shared/data/banking77_train.jsonl`` in any folder above
the checkout (so a worktree finds its main checkout's), and most scripts take ``--data``.
"""

from __future__ import annotations

import os
from pathlib import Path

HERE = Path(__file__).resolve().parent
NAME = Path("shared") / "data" / "banking77_train.jsonl"


def banking77_path() -> Path:
    """The Banking77 train split the benchmarks use by default (it may not exist)."""
    env = os.environ.get("PARACACHE_BANKING77")
    if env:
        return Path(env)
    for folder in HERE.parents:
        if (folder / NAME).exists():
            return folder / NAME
    return HERE.parent.parent / NAME


def require(path: Path) -> Path:
    """``path`` if it exists, else exit with what to put there and where it comes from."""
    if not path.exists():
        raise SystemExit(
            f"Banking77 not found at {path}. Set PARACACHE_BANKING77 (or --data, where a script "
            "takes it) to a file of JSON lines "
            '{"text": ..., "intent": ...} made from banking_data/train.csv of '
            "https://github.com/PolyAI-LDN/task-specific-datasets (CC BY 4.0; columns "
            "text,category -> text,intent). See benchmarks/banking77.py."
        )
    return path


BANKING77 = banking77_path()
