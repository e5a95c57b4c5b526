"""The local engine against a raw process pool and the original paramsurvey 0.4.21.

Each figure is a ratio taken in the same run, each case in a fresh Python process, timed from just
before ``init()`` to the results DataFrame in hand:

- ``raw``: ``multiprocessing.Pool(ncores)`` with fork, ``imap_unordered`` with a good chunksize,
  rows merged with their psets into a DataFrame — the practical limit on this machine;
- ``ours``: ``paramsurvey.init(); paramsurvey.map(...)``;
- ``orig``: paramsurvey==0.4.21 from PyPI in its own virtual environment (made on first use in
  ``benchmarks/.venv-orig``; skipped with ``--no-orig``).

Usage::

    python benchmarks/bench_local.py                 # every case, best of 3
    python benchmarks/bench_local.py --cases trivial_100k floats_100k --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORIG_VENV = HERE / ".venv-orig"

# case name -> (pset builder, worker, kwargs for ours)
CASES = {
    "trivial_100k": ("[{'x': i} for i in range(100_000)]", "double", {}),
    "trivial_1m": ("[{'x': i} for i in range(1_000_000)]", "double", {}),
    "floats_100k": ("[{f'a{j}': i + j / 10 for j in range(10)} for i in range(100_000)]", "floats10", {}),
    "sleep_2000x10ms": ("[{'x': i} for i in range(2000)]", "sleep10ms", {}),
    "burn_200x50ms": ("[{'x': i} for i in range(200)]", "burn50ms", {}),
    "mtpc1_1000": ("[{'x': i} for i in range(1000)]", "double", {"max_tasks_per_child": 1}),
    "crash_0_of_400": ("[{'x': i, 'die': False} for i in range(400)]", "sleep5ms_or_die", {}),
    "crash_10_of_400": ("[{'x': i, 'die': i % 40 == 7} for i in range(400)]", "sleep5ms_or_die", {}),
}
IDEAL = {"sleep_2000x10ms": 10.0, "burn_200x50ms": 5.0}

WORKERS = textwrap.dedent("""
    import os, time
    def double(pset, system_kwargs, user_kwargs):
        return {'y': 2 * pset['x']}
    def floats10(pset, system_kwargs, user_kwargs):
        return {f'b{j}': v * 2.0 for j, v in enumerate(pset.values())}
    def sleep10ms(pset, system_kwargs, user_kwargs):
        time.sleep(0.01)
        return {'y': pset['x']}
    def burn50ms(pset, system_kwargs, user_kwargs):
        end = time.process_time() + 0.05
        while time.process_time() < end:
            pass
        return {'y': pset['x']}
    def sleep5ms_or_die(pset, system_kwargs, user_kwargs):
        if pset['die']:
            os._exit(1)
        time.sleep(0.005)
        return {'y': pset['x']}
""").replace("{", "{{").replace("}", "}}")  # the templates below are str.format()ed

# As in a user's script (and as the raw Pool's script imports pandas), the imports come first.
OURS = WORKERS + textwrap.dedent("""
    import json, sys, time
    import pandas
    import paramsurvey
    psets = {psets}
    t0 = time.perf_counter()
    paramsurvey.init(verbose=0, **{init_kwargs})
    results = paramsurvey.map({worker}, psets, verbose=0)
    df = results.results
    t1 = time.perf_counter()
    assert len(df) + len(results.missing) == len(psets), (len(df), len(results.missing))
    print(json.dumps({{"seconds": t1 - t0, "rows": len(df)}}))
""")

RAW = WORKERS + textwrap.dedent("""
    import json, multiprocessing, os, time
    import pandas as pd
    def call(item):
        i, pset = item
        return i, {worker}(pset, {{}}, None)
    psets = {psets}
    t0 = time.perf_counter()
    n = len(os.sched_getaffinity(0))
    with multiprocessing.get_context('fork').Pool(n) as pool:
        chunksize = max(1, len(psets) // (n * 4))
        out = list(pool.imap_unordered(call, enumerate(psets), chunksize))
    out.sort(key=lambda t: t[0])
    df = pd.DataFrame([{{**psets[i], **r}} for i, r in out])
    t1 = time.perf_counter()
    print(json.dumps({{"seconds": t1 - t0, "rows": len(df)}}))
""")

# 0.4.x spawns its workers: they re-import __main__, so it needs a file and a __main__ guard.
ORIG = WORKERS + textwrap.dedent("""
    import json, time
    import pandas
    import paramsurvey
    def main():
        psets = {psets}
        t0 = time.perf_counter()
        paramsurvey.init(backend='multiprocessing', verbose=0)
        results = paramsurvey.map({worker}, psets, verbose=0)
        df = results.to_df()
        t1 = time.perf_counter()
        print(json.dumps({{"seconds": t1 - t0, "rows": len(df)}}))
        paramsurvey.finalize()
    if __name__ == '__main__':
        main()
""")


def peak_tree_memory(proc: subprocess.Popen[str], samples: list[float]) -> None:
    """Sample the proportional set size (PSS) of a process and all its descendants: PSS counts a
    page shared by a fork()ed pool once, where RSS would count it in every process."""
    import psutil

    try:
        root = psutil.Process(proc.pid)
        while proc.poll() is None:
            total = 0
            for p in [root, *root.children(recursive=True)]:
                try:
                    total += p.memory_full_info().pss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            samples.append(total)
            time.sleep(0.02)
    except psutil.NoSuchProcess:
        pass


def run_script(python: str, code: str, memory: bool) -> tuple[float, float | None]:
    with tempfile.NamedTemporaryFile("w", suffix=".py", dir=tempfile.gettempdir(), delete=False) as f:
        f.write(code)
    proc = subprocess.Popen([python, f.name], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tempfile.gettempdir())
    samples: list[float] = []
    sampler = threading.Thread(target=peak_tree_memory, args=(proc, samples)) if memory else None
    if sampler:
        sampler.start()
    out, err = proc.communicate(timeout=900)
    if sampler:
        sampler.join()
    os.unlink(f.name)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark script failed:\n{err[-3000:]}")
    seconds = json.loads(out.strip().splitlines()[-1])["seconds"]
    return seconds, (max(samples) / 2**20 if samples else None)


def ensure_orig_venv() -> str | None:
    python = ORIG_VENV / "bin" / "python"
    if not python.exists():
        print("making", ORIG_VENV, "with paramsurvey==0.4.21 ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(ORIG_VENV)], check=True)
        done = subprocess.run([str(python), "-m", "pip", "install", "-q", "paramsurvey==0.4.21"])
        if done.returncode != 0:
            return None
    return str(python)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    parser.add_argument("--repeats", type=int, default=3, help="best of N (default 3)")
    parser.add_argument("--no-orig", action="store_true", help="skip the original paramsurvey 0.4.21")
    parser.add_argument("--memory", action="store_true", help="also sample peak PSS of the process tree")
    args = parser.parse_args()
    orig_python = None if args.no_orig else ensure_orig_venv()
    print(f"{'case':<18} {'raw s':>8} {'ours s':>8} {'orig s':>8} {'ours/raw':>9} {'orig/ours':>10}"
          f" {'ideal':>6} {'ours/ideal':>10} {'raw MB':>8} {'ours MB':>8} {'MB ratio':>8}")
    results = {}
    for case in args.cases:
        psets, worker, init_kwargs = CASES[case]
        fmt = {"psets": psets, "worker": worker, "init_kwargs": repr(init_kwargs)}
        times: dict[str, float] = {}
        mem: dict[str, float | None] = {}
        variants = [("ours", sys.executable, OURS)]
        if not init_kwargs and not case.startswith("crash"):
            variants.insert(0, ("raw", sys.executable, RAW))
        if orig_python and case in ("trivial_100k", "floats_100k"):
            variants.append(("orig", orig_python, ORIG))
        for _ in range(args.repeats):  # interleaved, so that load on the machine hits all alike
            for label, python, template in variants:
                seconds, peak = run_script(python, template.format(**fmt), args.memory and case == "trivial_1m")
                if seconds < times.get(label, float("inf")):
                    times[label], mem[label] = seconds, peak
        results[case] = times

        def cell(x: float | None, spec: str = "8.3f") -> str:
            return format(x, spec) if x is not None else " " * (int(spec.split(".")[0]) - 1) + "-"

        raw, ours, orig = times.get("raw"), times["ours"], times.get("orig")
        ideal = IDEAL.get(case)
        print(f"{case:<18} {cell(raw)} {cell(ours)} {cell(orig)} {cell(ours / raw if raw else None, '9.2f')}"
              f" {cell(orig / ours if orig else None, '10.2f')} {cell(ideal, '6.1f')}"
              f" {cell(ours / ideal if ideal else None, '10.3f')} {cell(mem.get('raw'), '8.0f')}"
              f" {cell(mem.get('ours'), '8.0f')}"
              f" {cell(mem['ours'] / mem['raw'] if mem.get('raw') and mem.get('ours') else None, '8.2f')}",
              flush=True)
    if "crash_0_of_400" in results and "crash_10_of_400" in results:
        per_crash = (results["crash_10_of_400"]["ours"] - results["crash_0_of_400"]["ours"]) / 10
        print(f"cost of one crash (ours): {per_crash:+.3f} s per dead worker")


if __name__ == "__main__":
    main()
