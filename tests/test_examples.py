"""The examples installed with the package run as `python -m paramsurvey.examples.<name>`."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SRC = os.path.join(os.path.dirname(__file__), "..", "src")
EXAMPLES = {
    "readme": "0.3 0.3",
    "stats": "counter stats-example_wallclock, 50%tile",
    "cli": "0 3",
    "multistage": "final",
    "rerun_missing": "all done after",
    "building_psets": "outfile-3-6",
}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_runs(name, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARAMSURVEY_")}
    env["PYTHONPATH"] = SRC
    done = subprocess.run([sys.executable, "-m", f"paramsurvey.examples.{name}"], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert EXAMPLES[name] in done.stdout + done.stderr
