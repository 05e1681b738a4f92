"""Keyword settings -> the command line's flag names and texts.

Every setting is named as its `mdps` command-line flag, written as a Python
identifier: ``t_start=150`` is ``--t-start 150``, ``lambda_=0.1`` (``lambda``
is a Python keyword) is ``--lambda 0.1``. Flag names with dashes also work
through a dict: ``Detector(model, **{"t-start": 150})``. The engine validates
names and values and raises :class:`mdps.Error` naming the one at fault, so a
setting added to the engine works here without a change.
"""
from __future__ import annotations

import math
import numbers
import os
from typing import Any, Iterable, List, Tuple


def flag_name(key: str) -> str:
    """``lambda_`` -> ``lambda``, ``t_start`` -> ``t-start``."""
    if key.endswith("_") and not key.endswith("__"):
        key = key[:-1]
    return key.replace("_", "-")


def flag_text(key: str, value: Any) -> str:
    """A value as the text the flag takes: lists as ``2,3``, booleans as
    ``true``/``false``, numbers in the shortest form that reads back the same."""
    if isinstance(value, (bool,)) or type(value).__name__ == "bool_":
        return "true" if value else "false"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        v = float(value)
        return repr(v) if math.isfinite(v) else ("nan" if math.isnan(v) else ("inf" if v > 0 else "-inf"))
    if isinstance(value, (str, os.PathLike)):
        return os.fspath(value)
    if isinstance(value, Iterable):
        return ",".join(flag_text(key, v) for v in value)
    raise TypeError(f"{key}: cannot use a {type(value).__name__} as a setting")


def pairs(settings: dict) -> List[Tuple[str, str]]:
    """``{"lambda_": 0.1, "layers": [2, 3]}`` -> ``[("lambda", "0.1"), ("layers", "2,3")]``;
    ``None`` values are left out (the default)."""
    return [(flag_name(k), flag_text(k, v)) for k, v in settings.items() if v is not None]


def flags(settings: dict) -> List[str]:
    """The same as command-line arguments: ``["--lambda", "0.1", ...]``. A
    ``True`` boolean is a bare flag (``no_panels=True`` -> ``--no-panels``),
    ``False`` leaves it out."""
    out: List[str] = []
    for k, v in settings.items():
        if v is None or v is False:
            continue
        out.append("--" + flag_name(k))
        if v is not True:
            out.append(flag_text(k, v))
    return out
