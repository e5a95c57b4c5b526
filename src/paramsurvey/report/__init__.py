"""A survey, shown: one self-contained HTML report, or a live dashboard while the survey runs.

    >>> from paramsurvey import report                                  # doctest: +SKIP
    >>> report.write_report('survey.journal', 'survey.html')            # a journal, or a MapResults
    >>> report.Report(results)          # in Jupyter: shown inline (its _repr_html_)
    >>> report.serve('survey.journal', port=8050)                       # the live dashboard

or from the command line: ``paramsurvey report JOURNAL -o survey.html`` and
``paramsurvey dashboard JOURNAL``. The page shows where the survey stands (counts, rate, time
remaining, each run and resume with its provenance), the failures grouped by exception type with
example psets and a traceback each, failure rate and duration against each parameter, a results
explorer (parallel coordinates; a result against one or two parameters), the distribution of pset
durations and the throughput over time. Needs plotly (``pip install 'paramsurvey[report]'``).

The data walks one way: journal / MapResults -> ``Summary`` (``_data``) -> figures (``_figures``)
-> page (``_page``); ``_server`` serves the page live. Nothing in a journal is ever unpickled.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ..exceptions import ArgumentTypeError, BackendNotInstalled

if TYPE_CHECKING:
    from ._data import Summary
    from ._server import Dashboard

__all__ = ["Report", "serve", "summarise", "write_report"]

INSTALL_HINT = "the report needs plotly: install the 'report' extra (paramsurvey[report])"


def plotly_js() -> str:
    """plotly's JavaScript, to embed (a BackendNotInstalled naming the extra when plotly is absent)."""
    try:
        from plotly.offline import get_plotlyjs
    except ImportError as exc:
        raise BackendNotInstalled(INSTALL_HINT) from exc
    return str(get_plotlyjs())


def summarise(source: Any) -> Summary:
    """The ``Summary`` of a journal path or a ``MapResults``."""
    from .._results import MapResults
    from ._data import from_journal, from_results

    if isinstance(source, MapResults):
        return from_results(source)
    if isinstance(source, (str, os.PathLike)):
        return from_journal(source)
    raise ArgumentTypeError(f"a report is made of a journal path or a MapResults, not {type(source).__name__}")


class Report:
    """The report of a journal or a MapResults: ``.html()`` is the page, ``.save(path)`` writes it,
    and Jupyter shows it inline."""

    def __init__(self, source: Any) -> None:
        plotly_js()  # no plotly: say so before reading anything
        self.summary = summarise(source)

    def html(self) -> str:
        from ._page import render

        return render(self.summary, plotlyjs=plotly_js())

    def save(self, path: str | os.PathLike[str]) -> str:
        """Write the page to ``path`` (whole or not at all); return its absolute path."""
        path = os.path.abspath(os.fspath(path))
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(self.html())
        os.replace(tmp, path)
        return path

    def _repr_html_(self) -> str:
        # Jupyter shows this in an iframe-less output cell: the page's own <html> wrapper is harmless
        return self.html()


def write_report(source: Any, path: str | os.PathLike[str]) -> str:
    """Write the HTML report of ``source`` (a journal path or a MapResults) to ``path``; return its
    absolute path. A JournalError when a path is not a journal."""
    return Report(source).save(path)


def serve(journal: str | os.PathLike[str], port: int = 0, host: str = "127.0.0.1") -> Dashboard:
    """Start the live dashboard of a journal in a background thread; ``.url`` is its address,
    ``.stop()`` stops it. Only this machine can reach it unless ``host`` says otherwise."""
    from ._server import Dashboard

    plotly_js()
    return Dashboard.start(journal, port=port, host=host)
