"""The journal's identity of a pset: a 128-bit content hash computed column by column with numpy.

Why not a hash per pset (canonical JSON + blake2b, as ``_hashing`` does for seeds): it costs 2-4 us a
pset, as much as running a trivial pset, and a journal must cost trivial surveys almost nothing
(benchmarks/bench_journal.py). Here a whole batch of psets is hashed at once, in the driver's journal
writer thread: ints, floats and bools by numpy integer mixing, each distinct string once with blake2b,
and only unusual values (lists, big ints, datetimes, ...) one by one. About 0.1 us a pset.

The hash is defined value by value, so it does not depend on how psets were batched, on the order of
a pset's keys, or on whether the psets came as a list of dicts or a DataFrame:

- each value is hashed by its kind (``_kinds.kind_of_type``, the kinds of the results and of the
  part files): ``None``; bool; int within int64; float (as its float64 bits, every NaN alike, -0.0
  distinct from 0.0); str; anything else through its canonical JSON (``_hashing.canonical``).
  numpy scalars count as the Python value they stand for; ``True`` and ``1`` and ``1.0`` and ``'1'``
  all differ, as they do for the worker.
- a pset folds ``(key, value)`` over its keys in sorted order; an absent key is skipped, which is not
  the same as a key whose value is None.

Two 64-bit lanes make the 128 bits; the mixer is MurmurHash3's finalizer (a bijection of 64-bit
words). This is not a cryptographic hash: it identifies psets, it does not defend against forgery.
Stable across processes, machines, Python, numpy and pandas versions (nothing salted, nothing
borrowed from a library's private hashing). Changing anything here changes every journal's hashes:
bump ``HASH_VERSION``.
"""

from __future__ import annotations

import binascii
import hashlib
import operator
from collections.abc import Mapping, Sequence
from itertools import repeat
from typing import Any

import numpy as np

from .._hashing import canonical
from .._kinds import BOOL, FLOAT, INT, INT_TYPES, NONE, NONE_TYPE, STR, Column, classify, kind_of_type
from ._arrow import Typed

HASH_VERSION = 1

_U64 = np.uint64
_MASK = (1 << 64) - 1
_M1 = _U64(0xFF51AFD7ED558CCD)
_M2 = _U64(0xC4CEB9FE1A85EC53)
_S33 = _U64(33)
_MUL = (_U64(0x9E3779B97F4A7C15), _U64(0xD6E8FEB86659FD93))  # per-lane fold multipliers (odd)
_INIT = (_U64(0x243F6A8885A308D3), _U64(0x13198A2E03707344))
# Per-kind tags, xored into the 64-bit payload before mixing. The two lanes use different tags and
# tag differences, so two values of different kinds can collide in one lane but never in both.
_TAGS = {
    "int": (0x6A09E667F3BCC908, 0xBB67AE8584CAA73B),
    "float": (0x3C6EF372FE94F82B, 0xA54FF53A5F1D36F1),
    "bool": (0x510E527FADE682D1, 0x9B05688C2B3E6C1F),
}
_NONE = (_U64(0x1F83D9ABFB41BD6B), _U64(0x5BE0CD19137E2179))
_CANON_NAN = np.array([np.nan], dtype=np.float64).view(np.uint64)[0]


Values = np.ndarray | Sequence[Any]


def _fmix(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finalizer, in place on a uint64 array (wrapping arithmetic)."""
    h ^= h >> _S33
    h *= _M1
    h ^= h >> _S33
    h *= _M2
    h ^= h >> _S33
    return h


def _digest_lanes(data: bytes, person: bytes) -> tuple[int, int]:
    d = hashlib.blake2b(data, digest_size=16, person=person).digest()
    return int.from_bytes(d[:8], "little"), int.from_bytes(d[8:], "little")


def _key_lanes(key: str) -> tuple[np.uint64, np.uint64]:
    a, b = _digest_lanes(key.encode("utf-8", "surrogatepass"), b"ps-key")
    return _U64(a), _U64(b)


def _payload_lanes(bits: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Hash lanes of n 64-bit payloads (a uint64 array) of one kind."""
    t0, t1 = _TAGS[kind]
    return _fmix(bits ^ _U64(t0)), _fmix(bits ^ _U64(t1))


def _float_bits(values: np.ndarray) -> np.ndarray:
    arr = np.ascontiguousarray(values, dtype=np.float64)
    bits = arr.view(np.uint64).copy()
    nan = np.isnan(arr)
    if nan.any():
        bits[nan] = _CANON_NAN
    return bits


def _hash_numpy(values: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Lanes of a numeric numpy column, or None when its dtype needs the per-value path."""
    kind = values.dtype.kind
    if kind == "b":
        return _payload_lanes(values.astype(np.uint64), "bool")
    if kind == "i":
        return _payload_lanes(values.astype(np.int64).view(np.uint64), "int")
    if kind == "u":
        if values.dtype.itemsize == 8 and len(values) and values.max() > np.iinfo(np.int64).max:
            return None  # beyond int64: hashed like a Python big int, value by value
        return _payload_lanes(values.astype(np.int64).view(np.uint64), "int")
    if kind == "f" and values.dtype.itemsize <= 8:
        return _payload_lanes(_float_bits(values), "float")
    return None


def _hash_strings(values: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    # psets repeat their strings (a factor has few levels): hash each distinct one once
    cache: dict[Any, tuple[int, int]] = {}
    a = np.empty(len(values), dtype=np.uint64)
    b = np.empty(len(values), dtype=np.uint64)
    for i, s in enumerate(values):
        lanes = cache.get(s)
        if lanes is None:
            lanes = cache[s] = _digest_lanes(str(s).encode("utf-8", "surrogatepass"), b"ps-str")
        a[i], b[i] = lanes
    return a, b


def _hash_objects(values: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    a = np.empty(len(values), dtype=np.uint64)
    b = np.empty(len(values), dtype=np.uint64)
    for i, v in enumerate(values):
        if type(v) in INT_TYPES:  # an int beyond int64
            data = b"int:" + str(int(v)).encode()
        else:
            data = canonical({"v": v})
        a[i], b[i] = _digest_lanes(data, b"ps-obj")
    return a, b


def _hash_kind(values: list[Any], kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Lanes of values that are all of one kind (``_kinds.kind_of_type`` of each value's type)."""
    n = len(values)
    if kind == BOOL:
        return _payload_lanes(np.fromiter(values, dtype=bool, count=n).astype(np.uint64), "bool")
    if kind == INT:
        try:
            return _payload_lanes(np.fromiter(values, dtype=np.int64, count=n).view(np.uint64), "int")
        except OverflowError:  # some beyond int64: sort them out value by value
            return _hash_mixed_ints(values)
    if kind == FLOAT:
        return _payload_lanes(_float_bits(np.fromiter(values, dtype=np.float64, count=n)), "float")
    if kind == STR:
        return _hash_strings(values)
    if kind == NONE:
        return np.full(n, _NONE[0], dtype=np.uint64), np.full(n, _NONE[1], dtype=np.uint64)
    return _hash_objects(values)


def _hash_mixed_ints(values: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = -(1 << 63), (1 << 63) - 1
    small = [i for i, v in enumerate(values) if lo <= int(v) <= hi]
    a = np.empty(len(values), dtype=np.uint64)
    b = np.empty(len(values), dtype=np.uint64)
    big = sorted(set(range(len(values))) - set(small))
    if small:
        sa, sb = _payload_lanes(np.array([int(values[i]) for i in small], dtype=np.int64).view(np.uint64), "int")
        a[small], b[small] = sa, sb
    ba, bb = _hash_objects([values[i] for i in big])
    a[big], b[big] = ba, bb
    return a, b


def value_lanes(values: Values) -> tuple[np.ndarray, np.ndarray]:
    """The two hash lanes (uint64 arrays) of each value of one column."""
    if isinstance(values, np.ndarray) and values.dtype != object:
        lanes = _hash_numpy(values)
        if lanes is not None:
            return lanes
        values = values.tolist()
    elif isinstance(values, np.ndarray):
        values = values.tolist() if values.ndim == 1 else list(values)
    return typed_lanes(classify(values))


def typed_lanes(column: Typed) -> tuple[np.ndarray, np.ndarray]:
    """Lanes of a column classified (``_kinds.classify``, or typed for Arrow by ``_arrow.typed``):
    its numpy array when it has one, so that a column is scanned once for both; else value by
    value, the values of each kind together."""
    if column.kind in (BOOL, INT, FLOAT) and column.array is not None:
        lanes = _hash_numpy(column.array)
        if lanes is not None:
            if column.none is not None:
                a, b = lanes
                a[column.none] = _NONE[0]
                b[column.none] = _NONE[1]
            return lanes
    values = column.values if isinstance(column.values, list) else list(column.values)
    kind_of = {t: kind_of_type(t) for t in column.types}
    if column.none is not None:
        kind_of[NONE_TYPE] = NONE
    kinds = set(kind_of.values())
    if len(kinds) <= 1:
        return _hash_kind(values, kinds.pop() if kinds else NONE)
    n = len(values)
    a = np.empty(n, dtype=np.uint64)
    b = np.empty(n, dtype=np.uint64)
    row_kinds = [kind_of[t] for t in map(type, values)]
    for kind in kinds:
        idx = [i for i, k in enumerate(row_kinds) if k is kind]
        ga, gb = _hash_kind([values[i] for i in idx], kind)
        a[idx], b[idx] = ga, gb
    return a, b


def hash_columns(columns: Mapping[str, tuple[Values | Typed, np.ndarray | None]], n: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The 128-bit hash of each of n psets given column by column.

    ``columns[key] = (values, present)``: n values (or a ``Typed`` column), and a boolean mask of
    the psets that have the key (None: all of them). Returns two uint64 arrays, the lanes.
    """
    h0 = np.full(n, _INIT[0], dtype=np.uint64)
    h1 = np.full(n, _INIT[1], dtype=np.uint64)
    with np.errstate(over="ignore"):
        for key in sorted(columns):
            values, present = columns[key]
            k0, k1 = _key_lanes(key)
            v0, v1 = typed_lanes(values) if isinstance(values, Column) else value_lanes(values)
            if present is not None and not present.all():
                rows = np.flatnonzero(present)
                h0[rows] = _fmix((h0[rows] ^ k0) * _MUL[0] + v0[rows])
                h1[rows] = _fmix((h1[rows] ^ k1) * _MUL[1] + v1[rows])
            else:
                h0 = _fmix((h0 ^ k0) * _MUL[0] + v0)
                h1 = _fmix((h1 ^ k1) * _MUL[1] + v1)
    return h0, h1


def hex_bytes(h0: np.ndarray, h1: np.ndarray) -> np.ndarray:
    """The hashes as an (n, 32) uint8 array of lowercase hex digits (lane 0 then lane 1, each as
    8 little-endian bytes): the bytes of the ``_hash`` strings, built without a Python loop."""
    n = len(h0)
    raw = np.empty((n, 2), dtype="<u8")
    raw[:, 0] = h0
    raw[:, 1] = h1
    return np.frombuffer(binascii.hexlify(raw.tobytes()), dtype=np.uint8).reshape(n, 32)


_NIBBLE = np.full(256, 255, dtype=np.uint8)
_NIBBLE[np.frombuffer(b"0123456789", dtype=np.uint8)] = np.arange(10, dtype=np.uint8)
_NIBBLE[np.frombuffer(b"abcdef", dtype=np.uint8)] = np.arange(10, 16, dtype=np.uint8)


def parse_hex(strings: Any) -> tuple[np.ndarray, np.ndarray]:
    """The lanes of ``_hash`` strings: an Arrow string array (read without a Python loop when, as
    written, every string is 32 hex digits) or any sequence of str."""
    digits = _hex_digits(strings)
    if digits is None:  # not as paramsurvey writes them: one by one
        raw = b"".join(bytes.fromhex(s) for s in (strings.to_pylist() if hasattr(strings, "to_pylist") else strings))
        lanes = np.frombuffer(raw, dtype="<u8").reshape(-1, 2)
    else:
        nibbles = _NIBBLE[digits]
        if (nibbles == 255).any():
            raise ValueError("a _hash that is not lowercase hex")
        packed = ((nibbles[:, 0::2] << 4) | nibbles[:, 1::2]).astype(np.uint8)
        lanes = np.ascontiguousarray(packed).view("<u8")
    return lanes[:, 0].astype(np.uint64), lanes[:, 1].astype(np.uint64)


def _hex_digits(strings: Any) -> np.ndarray | None:
    """(n, 32) uint8 digits straight from an Arrow string array's buffers, or None."""
    if not hasattr(strings, "buffers") or strings.null_count or strings.type != "string":
        return None
    n = len(strings)
    _, offsets_buf, data_buf = strings.buffers()
    if not n:
        return np.zeros((0, 32), dtype=np.uint8)
    offsets = np.frombuffer(offsets_buf, dtype=np.int32)[strings.offset:strings.offset + n + 1]
    if not (np.diff(offsets) == 32).all():
        return None
    return np.frombuffer(data_buf, dtype=np.uint8)[offsets[0]:offsets[-1]].reshape(n, 32)


def hex_strings(h0: np.ndarray, h1: np.ndarray) -> np.ndarray:
    """The hashes as an object array of 32-character str."""
    return hex_bytes(h0, h1).view("S32").ravel().astype("U32").astype(object)


def list_columns(psets: Sequence[Mapping[str, Any]], keys: Sequence[str] | None = None
                 ) -> dict[str, tuple[list[Any], np.ndarray | None]]:
    """A list of pset dicts, column by column: key -> (values, present mask or None).
    ``keys``: every key any of these psets has, when known (the survey's checked union of keys)."""
    n = len(psets)
    if not n:
        return {}
    if keys is None:
        keys = list(psets[0].keys())
        same = set(map(len, psets)) == {len(keys)}
    else:
        same = len(psets[0]) == len(keys)
    if same:
        # the usual case: every pset has all the keys (none can have another key: either the count
        # is the same everywhere, or keys is the union), so itemgetter finds each one everywhere
        try:
            return {k: (list(map(operator.itemgetter(k), psets)), None) for k in keys}
        except KeyError:
            pass
    keys = list(dict.fromkeys(k for p in psets for k in p))
    out: dict[str, tuple[list[Any], np.ndarray | None]] = {}
    for k in keys:
        present = np.fromiter(map(operator.contains, psets, repeat(k)), dtype=bool, count=n)
        values = [p.get(k) for p in psets]
        out[k] = (values, None if present.all() else present)
    return out


def hash_psets(psets: Sequence[Mapping[str, Any]]) -> list[str]:
    """The journal hash of each pset dict, as 32 hex characters (for tests and one-off use)."""
    h0, h1 = hash_columns(list_columns(psets), len(psets))
    return hex_strings(h0, h1).tolist()
