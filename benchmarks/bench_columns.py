"""Benchmark paramsurvey._columns against the naive ``pd.DataFrame(list_of_dicts)`` baseline.

Run:  .venv/bin/python benchmarks/bench_columns.py [--quick]

Times are the best of a few repeats of: every add_chunk (the chunks are built beforehand, outside
the timing, as the workers build them) + to_frame.  The memory column is tracemalloc's peak during
add_chunk + to_frame, beyond the input chunks, divided by the final DataFrame's size (the chunks are
dropped one by one after add_chunk, as the driver does).
"""
from __future__ import annotations

import functools
import gc
import random
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import pandas as pd

from paramsurvey import _columns

Chunk = tuple[list[int], dict[str, list], dict[str, list[int]]]


def make_chunks(n: int, nchunks: int, make_col: Callable[[int, int], dict[str, Any]],
                shuffle: bool = True) -> list[Chunk]:
    """Split n rows into column-major chunks (as a worker builds them), in random arrival order."""
    size = -(-n // nchunks)
    chunks: list[Chunk] = []
    for start in range(0, n, size):
        stop = min(n, start + size)
        chunks.append((list(range(start, stop)), make_col(start, stop), {}))
    if shuffle:
        random.Random(0).shuffle(chunks)
    return chunks


def run_accumulator(chunks: list[Chunk]) -> pd.DataFrame:
    acc = _columns.ColumnAccumulator()
    while chunks:  # drop each chunk after add_chunk, as the driver does
        acc.add_chunk(*chunks.pop())
    return acc.to_frame()


def chunks_to_records(chunks: list[Chunk]) -> list[dict[str, Any]]:
    rows: dict[int, dict[str, Any]] = {}
    for positions, columns, _ in chunks:
        for i, p in enumerate(positions):
            rows[p] = {k: v[i] for k, v in columns.items()}
    return [rows[p] for p in sorted(rows)]


def identity(x: Any) -> Any:
    return x


def records_of(factory: Callable[[], list[Chunk]]) -> list[dict[str, Any]]:
    return chunks_to_records(factory())


def best_time(fn: Callable[[Any], Any], setup: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        arg = setup()
        gc.collect()
        t0 = time.perf_counter()
        result = fn(arg)
        best = min(best, time.perf_counter() - t0)
        del arg
    return best, result


def peak_ratio(chunks_factory: Callable[[], list[Chunk]]) -> tuple[float, float]:
    chunks = chunks_factory()
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    df = run_accumulator(chunks)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    size = df.memory_usage(index=True, deep=False).sum()
    return peak / 1e6, peak / size


CASES: list[tuple[str, int, int, Callable[[int, int], dict[str, Any]]]] = [
    ("100k x 1 int, 100 chunks", 100_000, 100, lambda a, b: {"x": list(range(a, b))}),
    ("100k int then float (60k/40k), 100 chunks", 100_000, 100,
     lambda a, b: {"x": [i if i < 60_000 else i + 0.5 for i in range(a, b)]}),
    ("100k x 3 (int, bool w/ gaps, str), 100 chunks", 100_000, 100,
     lambda a, b: {"i": list(range(a, b)), "b": [None if i % 7 == 0 else i % 2 == 0 for i in range(a, b)],
                   "s": [str(i) for i in range(a, b)]}),
    ("100k int/float interleaved (mixed chunks)", 100_000, 100,
     lambda a, b: {"x": [i if i % 2 else i + 0.5 for i in range(a, b)]}),
    ("100k x 1 list objects, 100 chunks", 100_000, 100, lambda a, b: {"x": [[i] for i in range(a, b)]}),
    ("1M x 10 float, 200 chunks (5k)", 1_000_000, 200,
     lambda a, b: {f"f{j}": [i * 0.5 + j for i in range(a, b)] for j in range(10)}),
    ("1M x 10 float, 1000 chunks (1k)", 1_000_000, 1000,
     lambda a, b: {f"f{j}": [i * 0.5 + j for i in range(a, b)] for j in range(10)}),
]


def main() -> None:
    quick = "--quick" in sys.argv
    repeat = 1 if quick else 3
    print(f"pandas {pd.__version__}, python {sys.version.split()[0]}")
    header = f"{'case':48s} {'accumulate':>11s} {'pd.DataFrame(dicts)':>20s} {'speedup':>8s} " \
             f"{'peak MB':>8s} {'peak/frame':>10s}"
    print(header)
    print("-" * len(header))
    for name, n, nchunks, make_col in CASES:
        if quick and n > 100_000:
            continue

        def factory(n: int = n, nchunks: int = nchunks, make_col: Any = make_col) -> list[Chunk]:
            return make_chunks(n, nchunks, make_col)

        t_acc, df = best_time(run_accumulator, factory, repeat)
        t_naive, naive = best_time(pd.DataFrame, functools.partial(records_of, factory), repeat)
        peak_mb, ratio = peak_ratio(factory)
        print(f"{name:48s} {t_acc * 1e3:9.1f}ms {t_naive * 1e3:18.1f}ms {t_naive / t_acc:7.1f}x "
              f"{peak_mb:8.1f} {ratio:10.2f}   [{dtypes(df)}] naive: [{dtypes(naive)}]")
        del df, naive
    # frame_from_records: how pset lists become the pset columns of the results
    for name, n in [("frame_from_records 1M psets x 3 (int, float, str)", 1_000_000)]:
        if quick:
            continue
        records = [{"a": i, "b": i * 0.5, "c": str(i)} for i in range(n)]
        t_acc, df = best_time(_columns.frame_from_records, functools.partial(identity, records), repeat)
        t_naive, naive = best_time(pd.DataFrame, functools.partial(identity, records), repeat)
        print(f"{name:48s} {t_acc * 1e3:9.1f}ms {t_naive * 1e3:18.1f}ms {t_naive / t_acc:7.1f}x "
              f"{'':8s} {'':10s}   [{dtypes(df)}] naive: [{dtypes(naive)}]")


def dtypes(df: pd.DataFrame) -> str:
    return ",".join(dict.fromkeys(str(t) for t in df.dtypes))


if __name__ == "__main__":
    main()
