"""Benchmark paramsurvey.stats.PerfStats against exact numpy.percentile (and PyPI's ddsketch, if installed).

The engine calls ``PerfStats.add_many`` once per finished group of psets, so the figure that matters
is the cost of many small ``add_many`` calls; the exact alternative keeps every sample and sorts.

Run::

    PYTHONPATH=src .venv/bin/python benchmarks/bench_stats.py [--n 1000000] [--chunk 1000]
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

try:
    from paramsurvey import stats
except Exception:  # the package __init__ may not import yet: load the module file alone
    _spec = importlib.util.spec_from_file_location(
        "paramsurvey.stats", Path(__file__).resolve().parents[1] / "src" / "paramsurvey" / "stats.py"
    )
    assert _spec is not None and _spec.loader is not None
    stats = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(stats)

QS = (50, 90, 95, 99)


def best_of(repeats: int, fn: Callable[[], object]) -> tuple[float, object]:
    """Least wall-clock seconds over ``repeats`` runs of ``fn``, and its last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="samples")
    parser.add_argument("--chunk", type=int, default=1_000, help="samples per add_many call")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    data = rng.lognormal(-1.0, 1.5, args.n)  # durations from ~ms to ~minutes
    chunks = [data[i : i + args.chunk] for i in range(0, args.n, args.chunk)]
    list_chunks = [c.tolist() for c in chunks]  # what arrives from workers: lists of floats
    exact = np.percentile(data, QS)
    rows: list[tuple[str, float, str]] = []

    def sketch_arrays() -> stats.PerfStats:
        s = stats.PerfStats()
        for c in chunks:
            s.add_many("t", c)
        return s

    def sketch_lists() -> stats.PerfStats:
        s = stats.PerfStats()
        for c in list_chunks:
            s.combine_stats({"t": c})
        return s

    def exact_numpy() -> np.ndarray:
        kept = np.concatenate(chunks)  # the exact way has to keep every sample
        return np.percentile(kept, QS)

    secs, sk = best_of(args.repeats, sketch_arrays)
    assert isinstance(sk, stats.PerfStats)
    rel = np.max(np.abs(np.array([sk.percentile("t", q) for q in QS]) - exact) / exact)
    n_calls = len(chunks)
    rows.append(("PerfStats.add_many, ndarray chunks", secs, f"{secs / n_calls * 1e6:.1f} us/call"))
    secs, _ = best_of(args.repeats, sketch_lists)
    rows.append(("PerfStats.combine_stats, list chunks", secs, f"{secs / n_calls * 1e6:.1f} us/call"))
    secs, _ = best_of(args.repeats, lambda: sk.read_stats("t"))
    rows.append(("PerfStats.read_stats (4 percentiles)", secs, f"max rel err {rel:.2%}"))
    n_single = min(args.n, 100_000)
    single = data[:n_single].tolist()

    def singles() -> None:
        s = stats.PerfStats()
        for v in single:
            s.add("t", v)

    secs, _ = best_of(args.repeats, singles)
    rows.append(
        (f"PerfStats.add x {n_single:,} (one at a time)", secs, f"{secs / n_single * 1e6:.2f} us/value")
    )
    secs, _ = best_of(args.repeats, exact_numpy)
    rows.append(("numpy concatenate + percentile, exact", secs, "keeps every sample"))

    try:
        from ddsketch import DDSketch  # optional, for comparison only
    except ImportError:
        rows.append(("ddsketch (PyPI)", float("nan"), "not installed"))
    else:

        def dd() -> None:
            s = DDSketch(relative_accuracy=stats.RELATIVE_ACCURACY)
            for v in single:
                s.add(v)

        secs, _ = best_of(args.repeats, dd)
        rows.append((f"ddsketch.DDSketch.add x {n_single:,}", secs, f"{secs / n_single * 1e6:.2f} us/value"))

    print(f"{args.n:,} lognormal samples, add_many chunks of {args.chunk:,}, best of {args.repeats}")
    print(f"{'what':44} {'seconds':>9}  note")
    for what, secs, note in rows:
        print(f"{what:44} {secs:9.4f}  {note}")
    print(
        f"sketch memory: {sk.bucket_count} buckets = {sk.bucket_count * 8 / 1024:.1f} kB; "
        f"raw samples: {data.nbytes / 1024**2:.1f} MB"
    )


if __name__ == "__main__":
    main()
