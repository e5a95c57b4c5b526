"""Stable content hashes of psets: the identity a journal resumes by, and the root of each pset's seed.

Stable means: the same on every run, machine, backend and Python process (so never ``hash()``, which
is salted per process), whatever the order of the pset's keys, and whether a value came from a list
of dicts or from a DataFrame (numpy scalars hash as the Python value they stand for).
Standard library only: this runs inside worker processes that must start fast.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any


def _native(value: Any) -> Any:
    # numpy / pandas scalars know their Python value; anything else falls back to a type-tagged repr
    # (only when that is another type: np.longdouble's .item() returns itself, and json would ask again)
    item = getattr(value, "item", None)
    if callable(item):
        try:
            native = item()
        except (TypeError, ValueError):
            pass
        else:
            if type(native) is not type(value):
                return native
    if isinstance(value, (set, frozenset)):
        return sorted(map(repr, value))
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        native = tolist()
        if type(native) is not type(value):
            return native
    return f"<{type(value).__module__}.{type(value).__qualname__}>{value!r}"


def _normal_float(value: float) -> Any:
    # json writes NaN/inf as bare words; keep them distinguishable and stable
    return value if math.isfinite(value) else repr(value)


def canonical(pset: Mapping[str, Any]) -> bytes:
    """The pset as canonical JSON bytes: sorted keys, native values."""
    try:
        text = json.dumps(pset, sort_keys=True, default=_native, allow_nan=False, separators=(",", ":"))
    except ValueError:  # a NaN or infinity somewhere
        text = json.dumps(_walk(pset), sort_keys=True, default=_native, separators=(",", ":"))
    return text.encode()


def _walk(value: Any) -> Any:
    if isinstance(value, float):
        return _normal_float(value)
    if isinstance(value, Mapping):
        return {str(k): _walk(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_walk(v) for v in value]
    native = _native(value) if not isinstance(value, (str, int, bool, type(None))) else value
    if native is not value:
        return _walk(native) if isinstance(native, (float, list, tuple, dict)) else native
    return value


def seed_for(map_seed: int, pset: Mapping[str, Any]) -> int:
    """A pset's seed: from map(seed=...) and its content; fits numpy's legacy 32-bit seeds."""
    h = hashlib.blake2b(canonical(pset), digest_size=8, key=str(map_seed).encode()[:64])
    return int.from_bytes(h.digest()[:4], "little")
