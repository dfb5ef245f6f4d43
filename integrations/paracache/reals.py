"""Numeric arguments: any real number that is not a bool, numpy's scalars included.

``max_error_rate=np.float32(0.02)`` (a value read from an array, a config parsed by
numpy or pandas) is a number like ``0.02``; ``isinstance(value, (int, float))`` refused
it (``np.float32`` is neither) while accepting ``True``. These say what a number is for
every public numeric argument (:mod:`paracache.values` and the constructors' checks),
and the checks store it as a plain ``int`` or ``float`` (what Redis commands, JSON and
comparisons expect).

Example:
    >>> import numpy as np
    >>> is_real(np.float32(0.02)), is_real(True), is_real(np.bool_(True)), is_real("1")
    (True, False, False, False)
    >>> is_int(np.int64(3)), is_int(3.0), as_number(np.int64(3)), as_number(np.float32(0.5))
    (True, False, 3, 0.5)
"""

from __future__ import annotations

import math
import numbers
from typing import Any, TypeGuard

__all__ = ["as_number", "is_finite", "is_int", "is_nan", "is_real"]


def is_real(value: Any) -> TypeGuard[float]:
    """A real number (``int``, ``float``, ``Fraction``, numpy's), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def is_int(value: Any) -> TypeGuard[int]:
    """An integer (``int``, numpy's), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_nan(value: Any) -> bool:
    """A real number that is NaN (an integer, however large, is not)."""
    return not isinstance(value, numbers.Integral) and math.isnan(float(value))


def is_finite(value: Any) -> bool:
    """A real number that is finite (an integer, however large, is)."""
    return isinstance(value, numbers.Integral) or math.isfinite(float(value))


def as_number(value: Any) -> int | float:
    """``value`` (a real number) as a plain ``int`` if it is an integer, else ``float``."""
    return int(value) if isinstance(value, numbers.Integral) else float(value)
