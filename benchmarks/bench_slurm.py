"""Slurm worker jobs (backend='slurm') against the multiprocessing backend, in the same run, on a
private single-node Slurm started here (tests/_slurm.py: 2 CPUs; needs tools/install-slurm).

Cases:

- ``sleep_20k``: 20,000 psets of 10 ms on 2 one-core worker jobs vs multiprocessing with 2 cores.
  Slurm is timed from just before ``init()`` (job submission and start included) to the results
  in hand; multiprocessing from just before ``init()`` too. Also: the time to the first result
  (``out_func``'s first call), from just before ``init()``. Target: ratio <= 1.3.
- ``trivial_100k``: 100,000 trivial psets: map time only (the jobs already running; best of
  ``--repeats``), vs multiprocessing's. Target: ratio <= 2.

Each backend runs in a fresh Python process. Usage::

    python benchmarks/bench_slurm.py                     # both cases
    python benchmarks/bench_slurm.py --cases trivial_100k --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import _slurm  # noqa: E402

CASES = {"sleep_20k": ("[{'x': i} for i in range(20_000)]", "sleep10ms", 1),
         "trivial_100k": ("[{'x': i} for i in range(100_000)]", "double", None)}
CORES = 2  # the test Slurm node's CPUs: 2 jobs of 1 core, or 2 local workers

SCRIPT = textwrap.dedent("""
    import json, os, sys, time
    def double(pset, system_kwargs, user_kwargs):
        return {'y': 2 * pset['x']}
    def sleep10ms(pset, system_kwargs, user_kwargs):
        time.sleep(0.01)
        return {'y': pset['x']}
    import paramsurvey
    backend, psets_src, worker, repeats, options = (sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]),
                                                    json.loads(sys.argv[5]))
    psets = eval(psets_src)
    first = []
    def out_func(user_ret, system_kwargs, user_kwargs):
        if not first:
            first.append(time.perf_counter())
    t0 = time.perf_counter()
    if backend == 'slurm':
        paramsurvey.init(backend='slurm', slurm=options, verbose=0)
    else:
        paramsurvey.init(backend=backend, ncores=options['jobs'], verbose=0)
    init_seconds = time.perf_counter() - t0
    times = []
    for i in range(repeats):
        t1 = time.perf_counter()
        results = paramsurvey.map(globals()[worker], psets, verbose=0, out_func=out_func if i == 0 else None)
        df = results.results
        times.append(time.perf_counter() - t1)
        assert len(df) == len(psets), (len(df), len(results.missing))
        if i == 0:
            total = time.perf_counter() - t0
    paramsurvey.finalize()
    print(json.dumps({"map": min(times), "first_map": times[0], "init": init_seconds, "total": total,
                      "first_result": first[0] - t0}))
""")


def run(backend: str, case: str, repeats: int, env: dict[str, str], options: dict[str, object]) -> dict[str, float]:
    psets, worker, _ = CASES[case]
    out = subprocess.run([sys.executable, "-c", SCRIPT, backend, psets, worker, str(repeats), json.dumps(options)],
                         capture_output=True, text=True, env=env, timeout=1800)
    if out.returncode != 0:
        raise SystemExit(f"{backend} {case} failed:\n{out.stderr[-3000:]}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=sorted(CASES), choices=sorted(CASES))
    parser.add_argument("--repeats", type=int, default=3, help="maps per backend for trivial_100k; the best counts")
    args = parser.parse_args()
    src = os.path.join(HERE, "..", "src")
    with _slurm.slurm_cluster() as cluster:
        env = dict(cluster.env, PYTHONPATH=os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]))
        options = {"jobs": CORES, "cores": 1, "memory": "1GB", "walltime": "01:00:00", "interface": "lo",
                   "log_directory": os.path.join(cluster.dir, "logs")}
        print(f"{'case':<14} {'backend':<16} {'init s':>7} {'first result s':>15} {'1st map s':>10} "
              f"{'init+1st map s':>15} {'best map s':>11}")
        for case in args.cases:
            repeats = CASES[case][2] or args.repeats
            rows = {b: run(b, case, repeats, env, options) for b in ("multiprocessing", "slurm")}
            for backend, r in rows.items():
                print(f"{case:<14} {backend:<16} {r['init']:>7.2f} {r['first_result']:>15.2f} {r['first_map']:>10.2f} "
                      f"{r['total']:>15.2f} {r['map']:>11.2f}")
            base, slurm = rows["multiprocessing"], rows["slurm"]
            if case == "sleep_20k":
                print(f"  slurm / multiprocessing, init + map (job start included): "
                      f"{slurm['total'] / base['total']:.2f}x (target <= 1.3)")
            else:
                print(f"  slurm / multiprocessing, best map time: {slurm['map'] / base['map']:.2f}x (target <= 2)")


if __name__ == "__main__":
    main()
