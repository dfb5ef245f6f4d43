"""Config files: the settings ``paracache calibrate --write-config`` writes and
``SemanticIndex.from_config`` reads (TOML, or JSON by extension). YAML is not read:
a ``.yaml``/``.yml`` file is refused with a ``ValueError`` naming it and the formats
that are.

Example:
    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "paracache.json"
    >>> _ = write_config(path, min_similarity=0.88)
    >>> load_config(path)
    {'min_similarity': 0.88}
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .guards import Guards
from .values import check_similarity, check_thresholds

__all__ = ["check_config_path", "load_config", "load_threshold", "write_config"]


#: Suffixes of formats paracache does not read (they are not TOML either).
_UNSUPPORTED = {".yaml": "YAML", ".yml": "YAML"}
#: What a config file may be, for error messages.
_FORMATS = "TOML (.toml) or JSON (.json)"


def check_config_path(path: str | os.PathLike[str]) -> Path:
    """``path`` as a :class:`~pathlib.Path` if paracache can read and write a config file
    of its name: JSON if it ends in ``.json``, else TOML; a ``.yaml``/``.yml`` file raises
    ``ValueError`` naming the file and the formats supported (YAML is not read).

    Example:
        >>> check_config_path("paracache.yaml")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: paracache.yaml: YAML config files are not supported; write the settings as ...
    """
    p = Path(path)
    kind = _UNSUPPORTED.get(p.suffix.lower())
    if kind is not None:
        raise ValueError(
            f"{p}: {kind} config files are not supported; write the settings as {_FORMATS}"
        )
    return p


def _read(path: Path) -> dict[str, Any]:
    check_config_path(path)
    text = path.read_text(encoding="utf-8-sig")  # a byte order mark (Notepad) is no text
    if path.suffix.lower() == ".json":
        data = json.loads(text)
    else:
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover - Python 3.10
            try:
                import tomli as tomllib
            except ImportError:
                raise ImportError(
                    "reading a TOML config on Python 3.10 needs `pip install tomli`; "
                    "or write the config as JSON"
                ) from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            if path.suffix.lower() == ".toml":
                raise
            raise ValueError(  # another suffix: say how it was read
                f"{path}: read as TOML (config files are {_FORMATS}): {exc}"
            ) from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a table/object at the top")
    section = data.get("paracache", data)
    if not isinstance(section, dict):
        raise ValueError(f"{path}: [paracache] must be a table")
    return section


def load_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The :class:`SemanticIndex` options in a config file: ``min_similarity``,
    ``thresholds`` and ``guards`` (a :class:`Guards`), whichever it sets.

    Example:
        >>> SemanticIndex(**load_config("paracache.toml"), namespace="faq")  # doctest: +SKIP
    """
    p = Path(path)
    try:
        section = _read(p)
    except ValueError as exc:  # not JSON / TOML (their errors say where, not which file)
        if str(exc).startswith(f"{p}:"):
            raise
        raise ValueError(f"{p}: {exc}") from exc
    known = {"min_similarity", "thresholds", "guards", "calibration"}
    unknown = set(section) - known
    if unknown:
        raise ValueError(f"{p}: unknown setting(s) {sorted(unknown)}; known: {sorted(known)}")
    out: dict[str, Any] = {}
    try:
        if "min_similarity" in section:
            out["min_similarity"] = check_similarity(section["min_similarity"])
        if "thresholds" in section:
            out["thresholds"] = check_thresholds(section["thresholds"])
        if "guards" in section:
            out["guards"] = Guards.from_dict(section["guards"])
    except (TypeError, ValueError) as exc:  # a bad value: say which file holds it
        kind = TypeError if isinstance(exc, TypeError) else ValueError
        raise kind(f"{p}: {exc}") from exc
    return out


def load_threshold(path: str | os.PathLike[str]) -> float:
    """The global ``min_similarity`` of a config file.

    Example:
        >>> SemanticIndex(min_similarity=load_threshold("paracache.toml"))  # doctest: +SKIP
    """
    config = load_config(path)
    if "min_similarity" not in config:
        raise ValueError(f"{path}: no min_similarity")
    value: float = config["min_similarity"]
    return value


def _toml_key(key: str) -> str:
    bare = key.replace("_", "").replace("-", "").isalnum() and key.isascii()
    return key if bare else json.dumps(key, ensure_ascii=False)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)


def write_config(
    path: str | os.PathLike[str],
    *,
    min_similarity: float | None = None,
    guards: Guards | None = None,
    thresholds: Mapping[str, Mapping[str, float]] | None = None,
    calibration: Mapping[str, Any] | None = None,
) -> Path:
    """Write (or update) a config file: TOML unless the name ends in ``.json`` (a
    ``.yaml``/``.yml`` name raises ``ValueError``, see :func:`check_config_path`).

    Settings already in the file are kept unless given here; per-scope thresholds are
    merged value by value.

    Example:
        >>> write_config("paracache.toml", min_similarity=0.9)  # doctest: +SKIP
    """
    p = check_config_path(path)
    current: dict[str, Any] = _read(p) if p.exists() else {}
    if min_similarity is not None:
        current["min_similarity"] = check_similarity(min_similarity)
    if guards is not None:
        current["guards"] = guards.as_dict()
    if thresholds:
        merged = {f: dict(t) for f, t in dict(current.get("thresholds", {})).items()}
        for field, table in check_thresholds(thresholds).items():
            merged.setdefault(field, {}).update(table)
        current["thresholds"] = merged
    if calibration:
        current["calibration"] = dict(calibration)
    load_check = {k: v for k, v in current.items() if k != "calibration"}
    if "thresholds" in load_check:
        check_thresholds(load_check["thresholds"])
    if p.suffix.lower() == ".json":
        p.write_text(json.dumps({"paracache": current}, indent=2) + "\n", encoding="utf-8")
        return p
    lines = [
        "# paracache settings (SemanticIndex.from_config); written by paracache calibrate",
        "[paracache]",
    ]
    if "min_similarity" in current:
        lines.append(f"min_similarity = {_toml_value(current['min_similarity'])}")
    if "guards" in current:
        lines += ["", "[paracache.guards]"]
        lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in current["guards"].items()]
    for field, table in current.get("thresholds", {}).items():
        lines += ["", f"[paracache.thresholds.{_toml_key(field)}]"]
        lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items()]
    if "calibration" in current:
        lines += ["", "# how the threshold was measured (informational)", "[paracache.calibration]"]
        lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in current["calibration"].items()]
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p
