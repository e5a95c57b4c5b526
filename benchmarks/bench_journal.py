"""What a journal costs: the same survey with and without ``journal=``, and the time to resume.

Each run is a fresh Python process, timed from just before ``init()`` to the results DataFrame in
hand (for a journal: every part file written, fsync'd and closed). Runs with and without a journal
alternate, so that a machine's changing load hits both alike; the table gives the best and the
median of each and their ratios (the goal: at most 1.15 on ``trivial_100k``); ``paired`` is
the median ratio of each journal run to the run without one just before it, the figure least moved
by a machine whose load changes; ``cpu ratio`` compares the CPU seconds of all the run's processes.

- ``trivial_100k``: 100,000 psets ``{'x': i}``, the worker returns ``{'y': 2 * x}``;
- ``floats_100k``: 100,000 psets of 10 floats, the worker returns 10 floats;
- ``resume_100k``: map() again on the complete journal of ``trivial_100k``: nothing runs, the
  results come from the journal (compared with running the survey without a journal).

Usage::

    python benchmarks/bench_journal.py                     # every case, 5 repeats
    python benchmarks/bench_journal.py --cases trivial_100k --repeats 9
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
from typing import Any

CASES = {
    "trivial_100k": ("[{'x': i} for i in range(100_000)]", "double"),
    "floats_100k": ("[{f'a{j}': i + j / 10 for j in range(10)} for i in range(100_000)]", "floats10"),
    "resume_100k": ("[{'x': i} for i in range(100_000)]", "double"),
}

SCRIPT = textwrap.dedent("""
    import json, os, sys, time
    def double(pset, system_kwargs, user_kwargs):
        return {'y': 2 * pset['x']}
    def floats10(pset, system_kwargs, user_kwargs):
        return {f'b{j}': v * 2.0 for j, v in enumerate(pset.values())}
    psets = PSETS
    kwargs = json.loads(sys.argv[1])
    t0 = time.perf_counter()
    import paramsurvey
    paramsurvey.init(verbose=0)
    results = paramsurvey.map(WORKER, psets, verbose=0, **kwargs)
    df = results.results
    t1 = time.perf_counter()
    assert len(df) == len(psets), (len(df), len(results.missing))
    print(json.dumps({"seconds": t1 - t0}))
    paramsurvey.finalize()
""")


# Bytecode is cached, as for an installed package: with PYTHONDONTWRITEBYTECODE set (as in some
# sandboxes), every run would recompile every module, and bill the journal for compiling its own.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def run(case: str, journal: str | None) -> tuple[float, float]:
    """(wall seconds of init + map, CPU seconds of the whole run: driver, fork server, workers)."""
    psets, worker = CASES[case]
    code = SCRIPT.replace("PSETS", psets).replace("WORKER", worker)
    kwargs = {"journal": journal} if journal else {}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run([sys.executable, "-c", code, json.dumps(kwargs)], capture_output=True, text=True,
                         timeout=600, cwd=tempfile.gettempdir(), env=ENV)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise RuntimeError(f"benchmark run failed:\n{out.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return float(json.loads(out.stdout.strip().splitlines()[-1])["seconds"]), cpu


def dir_size(path: str) -> int:
    return sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path))


def bench(case: str, repeats: int, work: str) -> dict[str, Any]:
    plain: list[tuple[float, float]] = []
    journaled: list[tuple[float, float]] = []
    size = 0
    for i in range(repeats):
        path = os.path.join(work, f"{case}-{i}.journal")
        if case == "resume_100k":
            run(case, path)  # make the complete journal; then time a map() that only reads it
        plain.append(run(case, None))
        journaled.append(run(case, path))
        size = dir_size(path)
        shutil.rmtree(path)
    return {"case": case, "plain": plain, "journal": journaled, "size": size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="bench-journal-")
    try:
        run("trivial_100k", os.path.join(work, "warm-up.journal"))  # compiles and caches the bytecode
        rows = [bench(case, args.repeats, work) for case in args.cases]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{os.cpu_count()} cores, Python {sys.version.split()[0]}; wall: best / median of {args.repeats} "
          "runs, seconds; cpu: median CPU seconds of the run (all processes)")
    header = (f"{'case':<14} {'no journal':>17} {'journal':>17} {'ratio best':>11} {'ratio median':>13} "
              f"{'paired':>7} {'cpu ratio':>10} {'journal size':>13}")
    print(header)
    print("-" * len(header))
    for r in rows:
        p = [w for w, _ in r["plain"]]
        j = [w for w, _ in r["journal"]]
        pb, pm, jb, jm = min(p), statistics.median(p), min(j), statistics.median(j)
        cpu = statistics.median(c for _, c in r["journal"]) / statistics.median(c for _, c in r["plain"])
        paired = statistics.median(b / a for a, b in zip(p, j))  # each run against the one just before it
        size = f"{r['size'] / 2**20:.1f} MiB"
        print(f"{r['case']:<14} {pb:>7.3f} / {pm:>7.3f} {jb:>7.3f} / {jm:>7.3f} {jb / pb:>11.3f} {jm / pm:>13.3f} "
              f"{paired:>7.3f} {cpu:>10.3f} {size:>13}")


if __name__ == "__main__":
    main()
