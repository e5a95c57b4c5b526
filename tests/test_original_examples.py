"""The example scripts shipped with the original paramsurvey 0.4.21 run unchanged against this package.

The scripts are 0.4.21's, copied unmodified into tests/original_0_4_21/scripts (see the NOTICE there):
no network at test time. Each runs in a fresh interpreter with this package on its path, as 0.4.21's
Makefile ran them (its ``scripts`` target).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import paramsurvey

SRC = os.path.dirname(os.path.dirname(paramsurvey.__file__))  # the package under test
ORIGINAL_SCRIPTS = Path(__file__).parent / "original_0_4_21" / "scripts"
SCRIPTS = {
    # script -> words its output must contain (stdout or stderr)
    "paramsurvey-readme-example.py": "0.3 0.3",
    "paramsurvey-multistage-example.py": "final",
    "paramsurvey-greedy-example.py": "the final station order is",
    "paramsurvey-cli.py": "0 1",
    "pset-creation-example.py": "outfile-3-6",
    "paramsurvey-stats-example.py": "counter stats-example_wallclock",
    "paramsurvey-rerun-missing.py": "final missing count",
    "paramsurvey-carbon-example.py": "progress: total: 10",
}


def test_every_original_script_is_run():
    assert sorted(p.name for p in ORIGINAL_SCRIPTS.glob("*.py")) == sorted(SCRIPTS)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_original_example_runs_unchanged(script, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARAMSURVEY_")}
    # as 0.4.21's Makefile: PYTHONPATH=.:scripts (the package, and the scripts' own directory)
    env["PYTHONPATH"] = os.pathsep.join([SRC, str(ORIGINAL_SCRIPTS)])
    env["PARAMSURVEY_LIMIT"] = "10"  # the original's own way to shrink a run, honoured unchanged
    done = subprocess.run([sys.executable, str(ORIGINAL_SCRIPTS / script)], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=170)
    assert done.returncode == 0, done.stderr[-3000:]
    assert SCRIPTS[script] in done.stdout + done.stderr
