"""Reading a journal: its rows, one outcome per pset, and the match of a journal with a new survey.

A journal is a log: a pset that failed and was run again on resume has a row per outcome. The
outcome that counts for a pset is its newest success, else its newest failure. Identical psets
(the same content at several positions) share a hash; a survey with k copies of a pset needs k
outcomes of that hash.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from ._arrow import PLAIN, decode_key, encodings, from_arrow
from ._hash import hex_strings, parse_hex
from ._store import PartName, part_meta, read_parts

_DEFAULTS: dict[str, Any] = {"_position": -1, "_attempt": 0}


def _column(table: pa.Table, name: str, n: int, dtype: Any) -> np.ndarray:
    if name not in table.column_names:
        if dtype is object:
            return np.full(n, None, dtype=object)
        if dtype == "datetime64[us]":
            return np.full(n, np.datetime64("NaT"), dtype="datetime64[us]")
        return np.full(n, _DEFAULTS.get(name, np.nan), dtype=dtype)
    column = table.column(name)
    if dtype == "datetime64[us]":
        column = column.cast(pa.timestamp("us"))  # naive UTC
        return column.to_numpy().astype("datetime64[us]")
    values = column.to_numpy(zero_copy_only=False)
    return values if dtype is object else values.astype(dtype)


class JournalRows:
    """Every row of a journal, oldest part first: paramsurvey's columns as numpy arrays; the pset
    and result values are gathered on demand (so a status check never converts them)."""

    def __init__(self, path: str, parts: Sequence[tuple[PartName, pa.Table]], damaged: Sequence[str] = ()) -> None:
        self.path = path
        self.damaged = list(damaged)  # parts skipped: they cannot be read
        self.parts = [(name, table, part_meta(table.schema)) for name, table in parts]
        sizes = [t.num_rows for _, t, _ in self.parts]
        self.n = n = int(sum(sizes))
        self.part_of = np.repeat(np.arange(len(sizes), dtype=np.int64), sizes)
        self.row_in_part = (np.concatenate([np.arange(s, dtype=np.int64) for s in sizes]) if sizes
                            else np.zeros(0, dtype=np.int64))
        self.run = np.repeat(np.array([p.run for p, _, _ in self.parts], dtype=np.int64), sizes)

        def cat(name: str, dtype: Any) -> np.ndarray:
            if not self.parts:
                return np.zeros(0, dtype=dtype)
            return np.concatenate([_column(t, name, t.num_rows, dtype) for _, t, _ in self.parts])

        hashes = [t.column("_hash").combine_chunks() if "_hash" in t.column_names else pa.nulls(t.num_rows, pa.string())
                  for _, t, _ in self.parts]
        lanes = [parse_hex(h) for h in hashes]
        self.h0 = np.concatenate([a for a, _ in lanes]) if lanes else np.zeros(0, dtype=np.uint64)
        self.h1 = np.concatenate([b for _, b in lanes]) if lanes else np.zeros(0, dtype=np.uint64)
        self.position = cat("_position", np.int64)
        self.status = cat("_status", object)
        self.wall = cat("_wallclock", np.float64)
        self.iowait = cat("_iowait", np.float64)
        self.finished = cat("_finished", "datetime64[us]")
        self.attempt = cat("_attempt", np.int64)
        assert len(self.h0) == n

    @classmethod
    def load(cls, path: str, light: bool = False) -> JournalRows:
        """``light``: only paramsurvey's own small columns (for status)."""
        columns = ["_hash", "_position", "_status", "_wallclock", "_finished", "_attempt"] if light else None
        damaged: list[str] = []
        parts = read_parts(path, columns, damaged)
        return cls(path, parts, damaged)

    def failures(self, rows: np.ndarray) -> tuple[list[Any], list[Any]]:
        return self._gather_system(rows, "_exception"), self._gather_system(rows, "_traceback")

    def _gather_system(self, rows: np.ndarray, name: str) -> list[Any]:
        out: list[Any] = [None] * len(rows)
        for sel, table, meta, local in self._by_part(rows):
            if name in table.column_names:
                encoding = encodings(meta).get(name, PLAIN)
                values = from_arrow(table.column(name).take(pa.array(local)), encoding, unpickle=False)
                _scatter(out, sel, values)
        return out

    def _by_part(self, rows: np.ndarray) -> Any:
        rows = np.asarray(rows, dtype=np.int64)
        parts_of = self.part_of[rows]
        order = np.argsort(parts_of, kind="stable")
        sorted_parts = parts_of[order]
        bounds = np.flatnonzero(np.diff(sorted_parts)) + 1
        for sel in np.split(order, bounds):
            if not len(sel):
                continue
            _name, table, meta = self.parts[int(parts_of[sel[0]])]
            yield sel, table, meta, self.row_in_part[rows[sel]]

    def gather(self, rows: np.ndarray, which: str, unpickle: bool, by_key: bool) -> dict[Any, list[Any]]:
        """The pset (``which='psets'``) or result values of these rows, column by column, aligned
        with ``rows``; None where a row has no value. Keyed by the result key (``by_key``: the key
        itself, unpickled if it was stored pickled -- a tuple, say) or by the journal's column name."""
        out: dict[Any, list[Any]] = {}
        n = len(rows)
        keys: dict[str, Any] = {}  # stored key (as JSON) -> the key
        for sel, table, meta, local in self._by_part(rows):
            encoded = encodings(meta)
            if which == "psets":
                names = [(c, c) for c in meta.get("psets", ())]
            else:
                names = [(c, k) for c, k in meta.get("results", ())]
            take = pa.array(local)
            for column, stored in names:
                if column not in table.column_names:
                    continue
                values = from_arrow(table.column(column).take(take), encoded.get(column, PLAIN), unpickle)
                if by_key:
                    text = json.dumps(stored, sort_keys=True)
                    if text not in keys:
                        keys[text] = decode_key(stored)
                    label = keys[text]
                else:
                    label = column
                target = out.get(label)
                if target is None:
                    target = out[label] = [None] * n
                _scatter(target, sel, values)
        return out

    def hashes(self, rows: np.ndarray) -> np.ndarray:
        """The ``_hash`` strings of these rows."""
        return hex_strings(self.h0[rows], self.h1[rows])

    def result_types(self) -> dict[str, tuple[Any, pa.DataType, str]]:
        """The journal's result columns: name -> (stored key, Arrow type, encoding), oldest first, a
        null type replaced by the first real one (for the writer of a resumed survey)."""
        known: dict[str, tuple[Any, pa.DataType, str]] = {}
        for _, table, meta in self.parts:
            encoded = encodings(meta)
            for column, key in meta.get("results", ()):
                if column in table.column_names and (column not in known or pa.types.is_null(known[column][1])):
                    known[column] = (key, table.schema.field(column).type, encoded.get(column, PLAIN))
        return known

    def raw_timers(self) -> dict[str, list[float]]:
        raw: dict[str, list[float]] = {}
        for _, _, meta in self.parts:
            for name, values in meta.get("raw", {}).items():
                raw.setdefault(name, []).extend(values)
        return raw

    def latest(self) -> np.ndarray:
        """Rows holding each pset's outcome: its newest success, else its newest failure; for a pset
        present k times in a run, k rows. Sorted by run, then position."""
        if not self.n:
            return np.zeros(0, dtype=np.int64)
        keys = dense_keys(self.h0, self.h1)
        frame = pd.DataFrame({"h": keys, "run": self.run, "bad": self.status != "ok", "age": -np.arange(self.n)})
        if len(np.unique(keys)) == self.n:
            keep = np.arange(self.n)
        else:
            copies = frame.groupby(["h", "run"]).size().groupby(level="h").max()
            frame = frame.sort_values(["h", "bad", "age"])
            rank = frame.groupby("h").cumcount()
            keep = (-frame["age"][rank.to_numpy() < copies.reindex(frame["h"]).to_numpy()]).to_numpy()
        order = np.lexsort((self.position[keep], self.run[keep]))
        return keep[order].astype(np.int64)


def _scatter(target: list[Any], sel: np.ndarray, values: list[Any]) -> None:
    first, last = int(sel[0]), int(sel[-1])
    if last - first + 1 == len(sel):  # contiguous and increasing (stable sort): one slice copy
        target[first:last + 1] = values
    else:
        for i, v in zip(sel.tolist(), values):
            target[i] = v


def dense_keys(h0: np.ndarray, h1: np.ndarray) -> np.ndarray:
    """One int64 per distinct 128-bit hash (0, 1, 2, ...): what pandas groups and merges fast."""
    uniques, codes = np.unique(h0, return_inverse=True)
    witness = np.zeros(len(uniques), dtype=np.uint64)
    witness[codes] = h1
    if (witness[codes] != h1).any():  # two psets share lane 0 (odds ~ n**2 / 2**65): use both lanes
        seen: dict[tuple[int, int], int] = {}
        pairs = zip(h0.tolist(), h1.tolist())
        return np.fromiter((seen.setdefault(p, len(seen)) for p in pairs), dtype=np.int64, count=len(h0))
    return codes.astype(np.int64).ravel()


class Match:
    """Which psets of a new survey a journal already has outcomes for."""

    def __init__(self, rows: JournalRows, new: tuple[np.ndarray, np.ndarray], rerun_failed: bool) -> None:
        n = len(new[0])
        keys = dense_keys(np.concatenate([rows.h0, new[0]]), np.concatenate([rows.h1, new[1]]))
        journal_keys, survey_keys = keys[:rows.n], keys[rows.n:]
        ok = rows.status == "ok"
        journal = pd.DataFrame({"h": journal_keys, "bad": ~ok, "age": -np.arange(rows.n), "row": np.arange(rows.n)})
        journal = journal.sort_values(["h", "bad", "age"], kind="stable")  # per hash: ok first, newest first
        journal["rank"] = journal.groupby("h").cumcount()
        survey = pd.DataFrame({"h": survey_keys, "pos": np.arange(n)})
        survey["rank"] = survey.groupby("h").cumcount()
        matched = survey.merge(journal[["h", "rank", "row"]], on=["h", "rank"], how="inner")
        pos = matched["pos"].to_numpy(dtype=np.int64)
        row = matched["row"].to_numpy(dtype=np.int64)
        is_ok = ok[row]
        keep = is_ok if rerun_failed else np.ones(len(row), dtype=bool)
        self.ok_pos, self.ok_row = pos[is_ok], row[is_ok]
        failed = keep & ~is_ok
        self.fail_pos, self.fail_row = pos[failed], row[failed]
        done = np.zeros(n, dtype=bool)
        done[pos[keep]] = True
        self.todo = np.flatnonzero(~done)
        distinct = np.unique(journal_keys)
        self.journal_psets = len(distinct)
        self.foreign = int((~np.isin(distinct, survey_keys)).sum())
