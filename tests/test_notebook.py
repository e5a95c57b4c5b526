"""The example notebook runs headless in a real Jupyter kernel (nbclient + ipykernel), on the
default multiprocessing backend, with lambda and notebook-defined workers, and plots its results."""

from __future__ import annotations

import base64
import re
from importlib import resources

import nbformat
from nbclient import NotebookClient


def texts(cell, name: str | None = None) -> str:
    """A code cell's stream output (``name``: 'stdout' or 'stderr'), and plain-text results."""
    parts = []
    for out in cell.outputs:
        if out.output_type == "stream" and name in (None, out.name):
            parts.append(out.text)
        elif out.output_type == "execute_result" and name is None:
            parts.append(out.data.get("text/plain", ""))
    return "".join(parts)


def find(cells, start: str):
    [cell] = [c for c in cells if c.source.startswith(start)]
    return cell


def test_example_notebook_runs_headless(tmp_path, monkeypatch):
    source = resources.files("paramsurvey.examples") / "survey.ipynb"  # installed as package data
    nb = nbformat.reads(source.read_text(encoding="utf-8"), as_version=4)
    # the kernel of this Python, whatever kernels the user's own Jupyter directory declares
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter"))
    client = NotebookClient(nb, timeout=120, startup_timeout=60, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError on the first cell that fails
    cells = [c for c in nb.cells if c.cell_type == "code"]
    assert not [o for c in cells for o in c.outputs if o.output_type == "error"]

    assert "backend: multiprocessing" in texts(cells[0], "stdout")

    ratio = find(cells, "psets = paramsurvey.params.product({'a'")
    stdout = texts(ratio, "stdout")
    assert "15 results; total: 20, active: 0, finished: 15, failures: 5, exceptions: 5" in stdout
    notes = re.findall(r"ratio: pset (\d+) failed \(exception\): ZeroDivisionError\('division by zero'\)",
                       texts(ratio, "stderr"))
    assert sorted(map(int, notes)) == [0, 4, 8, 12, 16]
    assert "Traceback" not in texts(ratio, "stderr")  # verbose 1: a one-line note per failure
    assert re.search(r"\b1 +1 +1\.0+\b", texts(ratio))  # the DataFrame shown by the cell

    oscillator = find(cells, "DAMPING = 0.5")
    stdout = texts(oscillator, "stdout")
    assert "162 results; total: 162, active: 0, finished: 162, failures: 0, exceptions: 0" in stdout

    # the plot: a real PNG image
    plot = find(cells, "%matplotlib inline")
    [png] = [o.data["image/png"] for o in plot.outputs if "image/png" in o.get("data", {})]
    assert base64.b64decode(png)[:8] == b"\x89PNG\r\n\x1a\n"

    # progress: tqdm's notebook widget in each map's cell, its final state saved by nbclient
    for cell in (ratio, oscillator):
        assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in cell.outputs)
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    bars = [m["state"] for m in state.values() if m["model_name"] == "FloatProgressModel"]
    assert sorted((b["value"], b["max"]) for b in bars) == [(20, 20), (162, 162)]
    assert all(b["bar_style"] == "success" for b in bars)  # closed complete, not left 'danger'
    # tqdm's widget spaces its text with figure spaces (U+2007)
    labels = [m["state"].get("value", "").replace("\u2007", " ") for m in state.values()
              if m["model_name"] == "HTMLModel"]
    assert any("20/20" in label and "finished 15, failures 5, exceptions 5" in label for label in labels)

    # the hidden logfile, in the kernel's working directory
    assert list(tmp_path.glob(".paramsurvey-*.log"))
