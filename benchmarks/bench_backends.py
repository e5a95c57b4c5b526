"""Map time of the same survey on every backend, as a ratio to multiprocessing measured in the same run
(the goal: 100,000 trivial psets on Ray and on Dask within 3x of multiprocessing).

Each backend runs in a fresh Python process: ``init()`` (starting a local Ray or Dask is not timed),
then each map is timed from just before ``map()`` to the results DataFrame in hand. The table shows
the first map of the session and the best of ``--repeats`` maps, and the best as a ratio to the
best of multiprocessing.

Usage::

    python benchmarks/bench_backends.py                       # trivial_100k on every backend
    python benchmarks/bench_backends.py --cases trivial_100k sleep_400x10ms --repeats 3
    python benchmarks/bench_backends.py --backends multiprocessing ray
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap

CASES = {
    "trivial_100k": ("[{'x': i} for i in range(100_000)]", "double"),
    "trivial_1m": ("[{'x': i} for i in range(1_000_000)]", "double"),
    "floats_100k": ("[{f'a{j}': i + j / 10 for j in range(10)} for i in range(100_000)]", "floats10"),
    "sleep_400x10ms": ("[{'x': i} for i in range(400)]", "sleep10ms"),
}

SCRIPT = textwrap.dedent("""
    import json, os, sys, time
    def double(pset, system_kwargs, user_kwargs):
        return {'y': 2 * pset['x']}
    def floats10(pset, system_kwargs, user_kwargs):
        return {f'b{j}': v * 2.0 for j, v in enumerate(pset.values())}
    def sleep10ms(pset, system_kwargs, user_kwargs):
        time.sleep(0.01)
        return {'y': pset['x']}
    import paramsurvey
    backend, psets_src, worker, repeats = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    psets = eval(psets_src)
    t0 = time.perf_counter()
    paramsurvey.init(backend=backend, verbose=0)
    init_seconds = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        results = paramsurvey.map(globals()[worker], psets, verbose=0)
        df = results.results
        times.append(time.perf_counter() - t0)
        assert len(df) == len(psets), (len(df), len(results.missing))
    paramsurvey.finalize()
    print(json.dumps({"map": min(times), "first": times[0], "init": init_seconds}))
""")


def run(backend: str, case: str, repeats: int) -> dict[str, float]:
    psets, worker = CASES[case]
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    out = subprocess.run([sys.executable, "-c", SCRIPT, backend, psets, worker, str(repeats)],
                         capture_output=True, text=True, env=env, timeout=1800)
    if out.returncode != 0:
        raise SystemExit(f"{backend} {case} failed:\n{out.stderr[-3000:]}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=["trivial_100k"], choices=sorted(CASES))
    parser.add_argument("--backends", nargs="+", default=["multiprocessing", "ray", "dask"])
    parser.add_argument("--repeats", type=int, default=3, help="maps per backend; the best counts")
    args = parser.parse_args()
    backends = ["multiprocessing"] + [b for b in args.backends if b != "multiprocessing"]
    print(f"{'case':<16} {'backend':<16} {'init s':>8} {'first map s':>12} {'best map s':>11} "
          f"{'best x multiprocessing':>23}")
    for case in args.cases:
        base = None
        for backend in backends:
            figures = run(backend, case, args.repeats)
            if base is None:
                base = figures["map"]
            print(f"{case:<16} {backend:<16} {figures['init']:8.2f} {figures['first']:12.3f} "
                  f"{figures['map']:11.3f} {figures['map'] / base:23.2f}", flush=True)


if __name__ == "__main__":
    main()
