"""The ``paramsurvey`` command line: look at a survey's journal, also while the survey runs.

    paramsurvey status   JOURNAL             counts by status, rate, time remaining
    paramsurvey failures JOURNAL             failed psets grouped by exception type, a traceback each
    paramsurvey export   JOURNAL OUT         OUT.parquet or OUT.csv: one row per pset
    paramsurvey repair   JOURNAL             rebuild damaged metadata, set damaged parts aside
    paramsurvey plot     JOURNAL OUT.png     finished psets over time, histogram of pset durations
    paramsurvey report   JOURNAL -o OUT.html one self-contained HTML report (plotly, works offline)
    paramsurvey dashboard JOURNAL            the same page, served live while the survey runs

Every command reads what is on disk now; none of them unpickles anything unless asked to
(``export --unpickle``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ._clock import duration_text
from ._records import Status
from .exceptions import JournalError

if TYPE_CHECKING:
    from .journal import JournalStatus

EXIT_OK, EXIT_ERROR = 0, 1
# the statuses `failures` lists (cancelled psets did not fail: the map was stopped before them)
FAILED = tuple(s.value for s in (Status.EXCEPTION, Status.CRASHED, Status.TIMEOUT))
EXAMPLE_PSETS = 5  # psets listed per failure group
DASHBOARD_PORT = 8050  # the dashboard's default port: easy to remember, free on most machines


def cmd_status(args: argparse.Namespace) -> int:
    from .journal import status

    info = status(args.journal)
    if args.json:
        print(json.dumps(info.to_dict(), indent=1, default=str))
        return EXIT_OK
    counts = info.counts
    failed = ", ".join(f"{counts.get(k, 0)} {k}" for k in FAILED if counts.get(k))
    name = repr(info.name) if info.name is not None else "?"
    print(f"journal:   {info.journal}  (survey {name}, run {info.run} of {info.runs})")
    if info.metadata_problem:
        print(f"warning:   {info.metadata_problem}")
    if info.rebuilt:
        print("warning:   its metadata was rebuilt from the parts (paramsurvey repair): the survey's size and "
              "earlier runs' provenance are unknown until its next run")
    for part in info.damaged_parts:
        print(f"damaged:   part {part} cannot be read: skipped here as by read() and export; its psets count "
              "as not run, and the next run of the survey sets it aside and runs them again")
    print(f"state:     {_state_line(info)}")
    print(f"psets:     {info.total} total: {counts.get('ok', 0)} ok, {info.failures} failed"
          f"{' (' + failed + ')' if failed else ''}, {info.remaining} to go")
    if info.rate:
        eta = f"; about {duration_text(info.eta)} remaining" if info.eta is not None else ""
        print(f"rate:      {info.rate:.3g} psets/s (this run: {info.this_run} psets){eta}")
    if info.last_finished:
        print(f"last:      a pset finished at {info.last_finished}")
    if info.command_line:
        dirty = " (with uncommitted changes)" if info.git_dirty else ""
        commit = f", git {info.git_commit[:12]}{dirty}" if info.git_commit else ""
        print(f"command:   {info.command_line}{commit}")
    return EXIT_OK


def _state_line(info: JournalStatus) -> str:
    if info.state == "running":
        where = f"pid {info.pid} on {info.host}" if info.pid else "another process"
        return f"running ({where}), for {duration_text(info.elapsed)}"
    if info.state == "finished":
        took = f", in {duration_text(info.elapsed)}" if info.elapsed is not None else ""
        return f"finished at {info.end_time}{took}"
    return (f"stopped{' at ' + info.end_time if info.end_time else ''}, not finished "
            "(interrupted or killed): run the survey again with this journal to resume")


def cmd_failures(args: argparse.Namespace) -> int:
    from .journal import pset_keys, read, read_meta
    from .report._data import exception_type, pset_text  # one grouping and pset text for both

    frame = read(args.journal)
    failed = frame[frame["_status"].isin(FAILED)]
    if not len(failed):
        print(f"no failed psets in {args.journal} ({len(frame)} psets)")
        return EXIT_OK
    try:
        keys = read_meta(args.journal).get("pset_keys") or []
    except JournalError:  # damaged metadata (read() warned): the psets' columns come from the parts
        keys = pset_keys(args.journal)
    columns = [c for c in keys if c in frame.columns]
    groups: dict[str, list[int]] = {}
    for i, (exc, status) in enumerate(zip(failed["_exception"], failed["_status"])):
        groups.setdefault(exception_type(exc, status), []).append(i)
    print(f"{len(failed)} failed psets of {len(frame)}, in {len(groups)} group(s) (each pset's latest outcome)")
    for name, rows in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        first = failed.iloc[rows[0]]
        print()
        print(f"== {name}: {len(rows)} pset(s) ({first['_status']}) ==")
        for i in rows[:EXAMPLE_PSETS]:
            print(f"  pset {failed.iloc[i]['_position']}: {pset_text(failed.iloc[i], columns)}")
        if len(rows) > EXAMPLE_PSETS:
            print(f"  ... and {len(rows) - EXAMPLE_PSETS} more")
        print(f"  {first['_exception']}")
        traceback = first["_traceback"]
        if traceback:
            print("  " + str(traceback).rstrip().replace("\n", "\n  "))
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from .journal import read

    out = args.out
    kind = "parquet" if re.search(r"\.(parquet|pq)$", out) else "csv" if re.search(r"\.csv(\.\w+)?$", out) else None
    if kind is None:
        print(f"paramsurvey export: cannot tell the format of {out!r}: name it .parquet or .csv", file=sys.stderr)
        return EXIT_ERROR
    frame = read(args.journal, unpickle=args.unpickle, history=args.history)
    if kind == "parquet":
        try:
            frame.to_parquet(out, index=False)
        except Exception as exc:  # unpickled objects Parquet cannot hold
            print(f"paramsurvey export: {out}: Parquet cannot hold these values ({exc}); export without "
                  "--unpickle, or to .csv", file=sys.stderr)
            return EXIT_ERROR
    else:
        for column in frame.columns:
            if frame[column].dtype == object and frame[column].map(lambda v: isinstance(v, bytes)).any():
                frame[column] = frame[column].map(
                    lambda v: f"<pickled, {len(v)} bytes>" if isinstance(v, bytes) else v)
        frame.to_csv(out, index=False)
    print(f"wrote {len(frame)} rows, {len(frame.columns)} columns to {out}")
    return EXIT_OK


def cmd_repair(args: argparse.Namespace) -> int:
    from .journal import repair

    done = repair(args.journal)
    if not done:
        print(f"nothing to repair: {args.journal} reads whole")
    for line in done:
        print(line)
    return EXIT_OK


def cmd_plot(args: argparse.Namespace) -> int:
    try:
        import matplotlib
    except ImportError:
        print("paramsurvey plot needs matplotlib: pip install 'paramsurvey[plot]'", file=sys.stderr)
        return EXIT_ERROR
    matplotlib.use("Agg")
    import matplotlib.dates
    import matplotlib.pyplot as plt
    import numpy as np

    from .journal import read

    frame = read(args.journal)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 7))
    if len(frame):
        finished = frame.sort_values("_finished")
        when = finished["_finished"].dt.tz_convert(None)
        ok = (finished["_status"] == "ok").to_numpy()
        top.step(when, np.cumsum(ok), where="post", label="ok")
        if (~ok).any():
            top.step(when, np.cumsum(~ok), where="post", label="failed", color="tab:red")
        top.legend(loc="upper left")
        locator = matplotlib.dates.AutoDateLocator()
        top.xaxis.set_major_locator(locator)
        top.xaxis.set_major_formatter(matplotlib.dates.ConciseDateFormatter(locator))
    top.set_title(f"{args.journal}: finished psets over time (UTC)")
    top.set_ylabel("psets (cumulative)")
    wall = frame["_wallclock"].dropna().to_numpy() if len(frame) else np.zeros(0)
    wall = wall[wall > 0]
    if len(wall):
        lo, hi = wall.min(), wall.max()
        log = hi / lo > 100
        bins = np.geomspace(lo, hi, 50) if log and hi > lo else 50
        bottom.hist(wall, bins=bins)
        if log:
            bottom.set_xscale("log")
    bottom.set_title("pset durations")
    bottom.set_xlabel("seconds")
    bottom.set_ylabel("psets")
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    plt.close(fig)
    print(f"wrote {args.out}")
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from .exceptions import BackendNotInstalled
    from .report import write_report

    try:
        path = write_report(args.journal, args.out)
    except BackendNotInstalled as exc:
        print(f"paramsurvey report: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(f"wrote {path}")
    return EXIT_OK


def cmd_dashboard(args: argparse.Namespace) -> int:
    import socket
    import threading

    from .exceptions import BackendNotInstalled
    from .report import serve

    try:
        dashboard = serve(args.journal, port=args.port, host=args.host)
    except BackendNotInstalled as exc:
        print(f"paramsurvey dashboard: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:  # the port is taken, or the address is not this machine's
        print(f"paramsurvey dashboard: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(f"paramsurvey dashboard of {args.journal}: {dashboard.url}", flush=True)
    print(f"from another machine: ssh -L {dashboard.port}:127.0.0.1:{dashboard.port} {socket.gethostname()}"
          f"   then open http://127.0.0.1:{dashboard.port}/", flush=True)
    print("Ctrl-C stops it", flush=True)
    try:
        threading.Event().wait()  # until Ctrl-C
    except KeyboardInterrupt:
        pass
    finally:
        dashboard.stop()
    print("paramsurvey dashboard: stopped", flush=True)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="paramsurvey", description="Look at a paramsurvey journal (also while its survey runs).",
        epilog="A journal is the directory given to paramsurvey.map(..., journal=PATH).")
    parser.add_argument("--version", action="version", version=f"paramsurvey {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("status", help="counts by status, rate and time remaining",
                       description="How far the survey is: psets by status, the rate, and the time remaining "
                                   "while it runs.")
    p.add_argument("journal", help="the journal directory")
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("failures", help="failed psets grouped by exception type",
                       description="The failed psets (each pset's latest outcome), grouped by exception type or "
                                   "crash, with a few of the psets and one full traceback per group.")
    p.add_argument("journal", help="the journal directory")
    p.set_defaults(func=cmd_failures)

    p = sub.add_parser("export", help="write the journal to .parquet or .csv",
                       description="Write one row per pset (its latest outcome): the pset columns, the result "
                                   "columns, then paramsurvey's (_status, _exception, ...).")
    p.add_argument("journal", help="the journal directory")
    p.add_argument("out", help="OUT.parquet or OUT.csv (.csv.gz compresses)")
    p.add_argument("--history", action="store_true", help="every outcome ever written, not one per pset")
    p.add_argument("--unpickle", action="store_true",
                   help="unpickle values stored pickled (lists, objects); only for a journal you trust")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("repair", help="rebuild damaged metadata, set damaged parts aside",
                       description="Repair a journal without running anything: rebuild a damaged or missing "
                                   "_paramsurvey.json from the part files (the damaged file is kept, renamed), "
                                   "set unreadable parts aside (their psets run again at the next run), remove "
                                   "what a killed survey left. Needs write access, and no survey writing it.")
    p.add_argument("journal", help="the journal directory")
    p.set_defaults(func=cmd_repair)

    p = sub.add_parser("plot", help="PNG: finished psets over time, histogram of pset durations",
                       description="Plot the finished psets over time and the distribution of pset durations "
                                   "(needs matplotlib: pip install 'paramsurvey[plot]').")
    p.add_argument("journal", help="the journal directory")
    p.add_argument("out", help="the PNG file to write")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("report", help="one self-contained HTML report of the survey",
                       description="Write one HTML file (plotly embedded: it opens offline, anywhere) showing the "
                                   "survey: state, runs and provenance, failures by exception type with their "
                                   "tracebacks, failure rate and duration by parameter, a results explorer, pset "
                                   "durations and throughput. Nothing is unpickled. Needs plotly (the 'report' "
                                   "extra: paramsurvey[report]).")
    p.add_argument("journal", help="the journal directory")
    p.add_argument("-o", "--out", default="survey.html", help="the HTML file to write (default: survey.html)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("dashboard", help="serve the report live while the survey runs",
                       description="Serve the report page over HTTP, read-only, refreshing as the journal grows. "
                                   "It listens on 127.0.0.1 only (reach it from elsewhere with ssh -L) unless "
                                   "--host says otherwise. Ctrl-C stops it.")
    p.add_argument("journal", help="the journal directory")
    p.add_argument("--port", type=int, default=DASHBOARD_PORT,
                   help=f"the port (default {DASHBOARD_PORT}; 0: any free one)")
    p.add_argument("--host", default="127.0.0.1",
                   help="the address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: every interface)")
    p.set_defaults(func=cmd_dashboard)
    return parser



def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``paramsurvey`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except JournalError as exc:
        print(f"paramsurvey {args.command}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:  # e.g. piped into head
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
