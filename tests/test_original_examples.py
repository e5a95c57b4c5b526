"""The example scripts shipped with the original paramsurvey 0.4.21 run unchanged against this package.

The scripts come from the original's source distribution on PyPI (downloaded once per test session,
as any user would get them); each runs in a fresh interpreter with this package on its path.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile

import pytest

SRC = os.path.join(os.path.dirname(__file__), "..", "src")
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


@pytest.fixture(scope="module")
def original_scripts(tmp_path_factory):
    where = tmp_path_factory.mktemp("orig")
    done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                           "-d", str(where), "paramsurvey==0.4.21"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (sdist,) = where.glob("paramsurvey-0.4.21.tar.gz")
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if "/scripts/" in m.name and m.name.endswith(".py")]
        tar.extractall(where, members=members, filter="data")
    return where / "paramsurvey-0.4.21" / "scripts"


@pytest.mark.timeout(180)
@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_original_example_runs_unchanged(original_scripts, script, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARAMSURVEY_")}
    env["PYTHONPATH"] = SRC
    env["PARAMSURVEY_LIMIT"] = "10"  # the original's own way to shrink a run, honoured unchanged
    done = subprocess.run([sys.executable, str(original_scripts / script)], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=170)
    assert done.returncode == 0, done.stderr[-3000:]
    assert SCRIPTS[script] in done.stdout + done.stderr
