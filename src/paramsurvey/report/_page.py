"""A ``Summary`` and its figures -> one HTML page.

The report file is self-contained: plotly's JavaScript is embedded once, every figure's data is in
the page, and nothing is fetched (no CDN, no fonts, no MathJax), so it opens offline anywhere. The
live dashboard serves the same page with plotly's JavaScript as a separate, cached file, plus a
few lines that reload the page when the journal changes.

Every text that comes from the survey (parameter names and values, exceptions, tracebacks, command
lines, paths) goes through ``html.escape``; the figures' data is JSON that plotly writes with ``<``
escaped, so no survey text can close a script or open a tag.
"""

from __future__ import annotations

import html
import json
from typing import Any

from .._clock import duration_text
from ._data import Summary
from ._figures import figures

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1200px;
       padding: 1em 2em; color: #222; }
h1 { font-size: 1.5em; word-break: break-all; } h2 { border-bottom: 1px solid #ddd; margin-top: 2em; }
table { border-collapse: collapse; margin: .5em 0; } td, th { padding: .2em .8em; text-align: left;
       border-bottom: 1px solid #eee; vertical-align: top; }
.counts td { font-size: 1.3em; } .ok { color: #1f77b4; } .failed { color: #d62728; }
.state { display: inline-block; padding: .1em .6em; border-radius: .3em; background: #eee; }
.state-running { background: #d9f2d9; } .state-stopped { background: #fde2c4; }
pre { background: #f6f6f6; padding: .6em; overflow-x: auto; font-size: .85em; max-height: 30em; }
.warning { background: #fff3cd; padding: .4em .8em; border-left: 4px solid #e0a800; }
.note { color: #555; } .caption { color: #555; margin: 0; } code { font-size: .9em; }
details { margin: .6em 0; } summary { cursor: pointer; font-weight: 600; }
"""

# The dashboard page asks the server for the journal's version this often (at least), and reloads on
# a change; the server may ask for longer between reloads (a big journal's page takes seconds to build).
POLL_MILLISECONDS = 2000
LIVE_SCRIPT = """
<script>
(function () {
  var version = %s;
  setInterval(function () {
    fetch("version", {cache: "no-store"}).then(function (r) { return r.text(); }).then(function (v) {
      if (v && v !== version) { window.location.reload(); }
    }).catch(function () {});
  }, %d);
})();
</script>
"""


def render(summary: Summary, plotlyjs: str | None, plotly_src: str | None = None,
           live_version: str | None = None, poll_milliseconds: int = POLL_MILLISECONDS) -> str:
    """The page: ``plotlyjs`` embedded (the report file), or loaded from ``plotly_src`` (the
    dashboard, which also passes ``live_version``: the page reloads when the server's differs)."""
    e = html.escape
    if plotlyjs is not None:
        script = f'<script type="text/javascript">{plotlyjs}</script>'
    else:
        script = f'<script type="text/javascript" src="{e(plotly_src or "plotly.min.js")}"></script>'
    body = [
        f"<h1>paramsurvey: {e(summary.title)}</h1>",
        f'<p class="note">Report made {e(summary.generated)} by paramsurvey'
        f"{' (live: refreshes as the journal grows)' if live_version else ''}.</p>",
        _state(summary),
        _warnings(summary),
        _failures(summary),
        _figures(summary),
        _columns(summary),
        _runs(summary),
    ]
    live = LIVE_SCRIPT % (json.dumps(live_version), poll_milliseconds) if live_version else ""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>paramsurvey: {e(summary.title)}</title><style>{STYLE}</style>{script}</head>\n"
            f"<body>\n{''.join(body)}\n{live}</body></html>\n")


def _state(s: Summary) -> str:
    e = html.escape
    state = ""
    if s.state:
        state = f'<p>State: <span id="state" class="state state-{e(s.state)}">{e(s.state)}</span>'
        if s.elapsed is not None:
            took = "running for" if s.state == "running" else "latest run took"
            state += f" &middot; {took} {duration_text(s.elapsed)}"
        state += "</p>"
    failed_kinds = ", ".join(f"{k} {e(name)}" for name, k in s.counts.items() if name != "ok" and k)
    cells = [("total", "count-total", s.total, ""), ("ok", "count-ok", s.counts.get("ok", 0), "ok"),
             ("failed", "count-failed", s.failed, "failed"), ("to go", "count-remaining", s.remaining, ""),
             ("finished", "count-done", s.done, "")]
    head = "".join(f"<th>{label}</th>" for label, *_ in cells)
    row = "".join(f'<td id="{ident}" class="{cls}">{value}</td>' for _label, ident, value, cls in cells)
    lines = [state, f'<table class="counts"><tr>{head}</tr><tr>{row}</tr></table>']
    if failed_kinds:
        lines.append(f"<p>Failed: {failed_kinds}.</p>")
    if s.rate:
        eta = f"; about {duration_text(s.eta)} remaining" if s.eta is not None else ""
        lines.append(f'<p id="rate">Rate: {s.rate:.3g} psets/s{eta}.</p>')
    if s.last_finished:
        lines.append(f"<p>Last pset finished at {e(s.last_finished)}.</p>")
    if s.runs:
        last = s.runs[-1]
        command = last.get("command_line")
        git = last.get("git_commit")
        dirty = " (with uncommitted changes)" if last.get("git_dirty") else ""
        if command:
            lines.append(f"<p>Command: <code>{e(str(command))}</code>"
                         f"{f', git <code>{e(str(git)[:12])}</code>{dirty}' if git else ''}.</p>")
    return "<h2>State</h2>" + "".join(lines)


def _warnings(s: Summary) -> str:
    e = html.escape
    out = [f'<p class="warning">{e(w)}</p>' for w in s.warnings]
    if s.done == 0:
        out.append('<p class="warning">No pset has finished yet: there is nothing to plot.</p>')
    out += [f'<p class="note">Note: {e(n)}.</p>' for n in s.notes]
    return "".join(out)


def _failures(s: Summary) -> str:
    if not s.failures:
        return "<h2>Failures</h2><p>No failed psets.</p>" if s.done else ""
    e = html.escape
    out = [f"<h2>Failures</h2><p>{s.failed} failed psets in {len(s.failures)} group(s), by exception type "
           "(or crash, timeout); each pset's latest outcome.</p>"]
    for group in s.failures:
        examples = "".join(f"<li>pset {'' if pos is None else pos}: <code>{e(text)}</code></li>"
                           for pos, text in group.examples)
        more = f"<li>... and {group.count - len(group.examples)} more</li>" if group.count > len(group.examples) else ""
        out.append(f'<details class="failure-group" open><summary>{e(group.kind)}: {group.count} pset(s) '
                   f"({e(group.status)})</summary><ul>{examples}{more}</ul>"
                   f'<pre class="exception">{e(group.exception)}</pre>'
                   + (f'<pre class="traceback">{e(group.traceback)}</pre>' if group.traceback else "")
                   + "</details>")
    return "".join(out)


def _figures(s: Summary) -> str:
    made = figures(s)
    if not made:
        return ""
    e = html.escape
    config = {"displaylogo": False, "responsive": True}
    out = ["<h2>Plots</h2>"]
    for fig in made:
        div = fig.figure.to_html(full_html=False, include_plotlyjs=False, div_id=f"plot-{fig.id}", config=config)
        out.append(f'<section id="{fig.id}"><h3>{e(fig.title)}</h3><p class="caption">{e(fig.caption)}</p>'
                   f"{div}</section>")
    return "".join(out)


def _columns(s: Summary) -> str:
    e = html.escape
    rows = "".join(f"<tr><td><code>{e(str(name))}</code></td><td>{kind}</td><td>{e(s.omitted.get(name, 'plotted'))}"
                   "</td></tr>"
                   for kind, names in (("parameter", s.pset_keys), ("result", s.result_keys)) for name in names)
    if not rows:
        return ""
    return f"<h2>Columns</h2><table><tr><th>column</th><th>kind</th><th></th></tr>{rows}</table>"


RUN_FIELDS = ("run", "start_time", "end_time", "state", "host", "pid", "user", "total", "todo", "adopted", "written")
PROVENANCE_FIELDS = ("command_line", "cwd", "git_commit", "git_dirty", "python", "platform", "versions", "env")


def _runs(s: Summary) -> str:
    if not s.runs and not s.meta:
        return ""
    e = html.escape
    head = "".join(f"<th>{e(f)}</th>" for f in RUN_FIELDS)
    body = "".join("<tr>" + "".join(f"<td>{e(_text(run.get(f)))}</td>" for f in RUN_FIELDS) + "</tr>"
                   for run in s.runs)
    out = [f"<h2>Runs and provenance</h2><p>{len(s.runs)} run(s): the first, then each resume.</p>"
           f'<table id="runs"><tr>{head}</tr>{body}</table>']
    if s.runs:
        last = s.runs[-1]
        rows = "".join(f"<tr><th>{e(f)}</th><td><code>{e(_text(last.get(f)))}</code></td></tr>"
                       for f in PROVENANCE_FIELDS if f in last)
        out.append(f"<h3>Latest run</h3><table>{rows}</table>")
    survey = {k: v for k, v in s.meta.items() if k not in ("format", "version")}
    if survey:
        rows = "".join(f"<tr><th>{e(str(k))}</th><td><code>{e(_text(v))}</code></td></tr>" for k, v in survey.items())
        out.append(f"<h3>Survey</h3><table>{rows}</table>")
    return "".join(out)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)
