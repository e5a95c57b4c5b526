"""What the HTML report costs on a big journal: 1,000,000 psets.

The journal is built once (a real survey: paramsurvey.map with a journal, 1% of its psets failing)
and cached in the temporary directory, so later runs time only the report. Each repeat builds the
report in a fresh Python (imports included, as `paramsurvey report` pays them) and, for comparison,
reads the journal's parts with pandas alone (``pd.read_parquet`` of each part, concatenated); the
table gives the best and median of each, the ratio report / pandas, and the HTML file's size.
The goals: the report within 10 s, the file within 20 MB.

Usage::

    python benchmarks/bench_report.py                 # 3 repeats
    python benchmarks/bench_report.py --repeats 5 --psets 200000 --rebuild
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap

GOAL_SECONDS = 10.0
GOAL_BYTES = 20 * 2**20

BUILD = textwrap.dedent("""
    import sys, paramsurvey
    def worker(pset, system_kwargs, user_kwargs):
        if pset['i'] % 100 == 42:
            raise ValueError(f"no convergence at alpha={pset['alpha']}")
        return {'energy': pset['alpha'] * pset['beta'] - pset['i'] % 7, 'steps': pset['i'] % 1000}
    n = int(sys.argv[2])
    psets = [{'i': i, 'alpha': (i % 1000) / 100.0, 'beta': i // 1000 % 50, 'label': f'L{i % 4}'} for i in range(n)]
    paramsurvey.init(backend='multiprocessing', verbose=0)
    paramsurvey.map(worker, psets, journal=sys.argv[1], verbose=0)
    paramsurvey.finalize()
""")

REPORT = textwrap.dedent("""
    import json, sys, time
    t0 = time.perf_counter()
    from paramsurvey.report import write_report
    write_report(sys.argv[1], sys.argv[2])
    print(json.dumps({"seconds": time.perf_counter() - t0}))
""")

PANDAS = textwrap.dedent("""
    import glob, json, os, sys, time
    t0 = time.perf_counter()
    import pandas as pd
    parts = sorted(glob.glob(os.path.join(sys.argv[1], 'part-*.parquet')))
    frame = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
    assert len(frame)
    print(json.dumps({"seconds": time.perf_counter() - t0}))
""")

ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def journal_for(psets: int, rebuild: bool) -> str:
    """The cached journal of ``psets`` psets, built when absent (or asked to)."""
    path = os.path.join(tempfile.gettempdir(), f"paramsurvey-bench-report-{psets}.journal")
    done = os.path.join(path, ".bench-complete")
    if rebuild or not os.path.exists(done):
        shutil.rmtree(path, ignore_errors=True)
        print(f"building a journal of {psets} psets in {path} (once) ...", flush=True)
        subprocess.run([sys.executable, "-c", BUILD, path, str(psets)], check=True, timeout=1800, env=ENV)
        with open(done, "w"):
            pass
    return path


def timed(code: str, *args: str) -> float:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=600, env=ENV)
    if out.returncode != 0:
        raise RuntimeError(f"benchmark run failed:\n{out.stderr[-3000:]}")
    return float(json.loads(out.stdout.strip().splitlines()[-1])["seconds"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--psets", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rebuild", action="store_true", help="build the journal again")
    args = parser.parse_args()
    journal = journal_for(args.psets, args.rebuild)
    out = os.path.join(tempfile.mkdtemp(prefix="paramsurvey-bench-report-"), "survey.html")
    report, pandas = [], []
    for _ in range(args.repeats):  # alternating, so a changing machine load hits both alike
        pandas.append(timed(PANDAS, journal))
        report.append(timed(REPORT, journal, out))
    size = os.path.getsize(out)
    shutil.rmtree(os.path.dirname(out), ignore_errors=True)
    print(f"{os.cpu_count()} cores; {args.psets} psets; seconds, best / median of {args.repeats} fresh Pythons")
    print(f"{'pandas alone':>14}  {min(pandas):7.2f} / {statistics.median(pandas):7.2f}")
    print(f"{'report':>14}  {min(report):7.2f} / {statistics.median(report):7.2f}")
    print(f"ratio report / pandas: best {min(report) / min(pandas):.2f}, "
          f"median {statistics.median(report) / statistics.median(pandas):.2f}")
    print(f"HTML file: {size / 2**20:.2f} MiB (goal <= {GOAL_BYTES / 2**20:.0f} MiB); "
          f"report median {statistics.median(report):.2f} s (goal <= {GOAL_SECONDS:.0f} s)")
    ok = statistics.median(report) <= GOAL_SECONDS and size <= GOAL_BYTES
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
