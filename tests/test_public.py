"""The public face: ``paramsurvey.__all__`` is exactly the documented API, every name in it imports,
and the modules that are not documented are private."""

from __future__ import annotations

import importlib
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

import paramsurvey

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

PUBLIC = [
    # the errors (README, docs/backends.md, docs/journal.md) and Ctrl-C's partial results
    "ArgumentError", "ArgumentTypeError", "BackendError", "BackendNotInstalled", "Interrupted",
    "JournalError", "ParamsurveyError", "UsageError",
    # what map() returns, and its parts
    "MapProgress", "MapResults", "MissingPsets", "PerfStats",
    # the calls
    "backend", "current_core_count", "current_resources", "finalize", "init", "map",
    # the documented modules
    "journal", "params", "report", "stats", "utils",
]
# paramsurvey.<x> in the documents that is not Python API: graphite metric paths
# (docs/monitoring.md), the example programs, run with `python -m paramsurvey.examples.<name>`, and
# the console entry point paramsurvey.cli:main (the `paramsurvey` command), and the module path
# Python prints for an error class in a quoted traceback (paramsurvey.exceptions.Interrupted: the
# classes themselves are public as paramsurvey.Interrupted, ...)
NOT_API = {"sweep1", "examples", "cli", "exceptions"}
PRIVATE_NOW = ("logfile", "carbon", "progress", "results")


def documented_names() -> set[str]:
    """``paramsurvey.<name>`` anywhere in the README and docs, and the calls the README lists bare
    ("Also: `paramsurvey.finalize()` ..., `backend()`, `current_core_count()`, ...")."""
    text = "\n".join(path.read_text() for path in DOCUMENTS)
    dotted = set(re.findall(r"\bparamsurvey\.([A-Za-z]\w*)", text))
    also = re.search(r"^Also: (.*?)\n\n", (ROOT / "README.md").read_text(), re.MULTILINE | re.DOTALL)
    assert also is not None, "the README's 'Also:' paragraph of further calls is gone"
    bare = set(re.findall(r"`(\w+)\(\)`", also.group(1)))
    return (dotted | bare) - NOT_API


def test_all_is_sorted_and_exactly_the_public_names():
    assert paramsurvey.__all__ == sorted(paramsurvey.__all__)
    assert set(paramsurvey.__all__) == set(PUBLIC) and len(paramsurvey.__all__) == len(PUBLIC)


def test_every_documented_name_is_in_all():
    documented = documented_names()
    assert {"init", "map", "finalize", "backend", "Interrupted", "journal"} <= documented  # the scan works
    assert documented - set(paramsurvey.__all__) == set()


def test_every_name_in_all_imports():
    for name in paramsurvey.__all__:
        assert getattr(paramsurvey, name) is not None
    # in a fresh interpreter, as a user's `from paramsurvey import *`
    code = ("from paramsurvey import *\n"
            "import paramsurvey\n"
            "missing = [n for n in paramsurvey.__all__ if n not in globals()]\n"
            "print(missing)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("module", PRIVATE_NOW)
def test_undocumented_modules_are_private(module):
    with pytest.raises(AttributeError):
        getattr(paramsurvey, module)
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(f"paramsurvey.{module}")
    importlib.import_module(f"paramsurvey._{module}")


def test_the_console_entry_point_and_the_examples_stay():
    # tomllib is Python 3.11+; the package supports 3.9: the one line is read by pattern
    found = re.search(r'^paramsurvey = "([\w.]+):(\w+)"$', (ROOT / "pyproject.toml").read_text(), re.MULTILINE)
    assert found is not None, "the console entry point is gone from pyproject.toml"
    module, func = found.groups()
    assert module == "paramsurvey.cli" and callable(getattr(importlib.import_module(module), func))
    assert callable(importlib.import_module("paramsurvey.examples").sleep_worker)  # 0.4.x's examples module
    assert importlib.util.find_spec("paramsurvey.examples.readme") is not None  # run, not imported
