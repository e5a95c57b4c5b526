"""A ``Summary`` -> plotly figures (plotly only: no chart drawn by hand).

Each figure comes with its id and a caption; a figure whose data is absent (no failures, no timing,
no numeric result) is not made. Where a figure offers several views (a result against each
parameter, say), it carries them all as traces and a plotly dropdown shows one at a time, so the
page needs no server and no code of its own to switch them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ._data import Curve, Summary

# A small figure height, so that a page of several figures reads without endless scrolling.
HEIGHT = 420
FAILED_COLOUR, OK_COLOUR = "#d62728", "#1f77b4"


@dataclass
class Figure:
    id: str
    title: str
    caption: str
    figure: Any  # plotly.graph_objects.Figure


def figures(summary: Summary) -> list[Figure]:
    """Every figure the summary has data for, in page order."""
    makers = [_failures_by_param, _explorer, _result_lines, _result_grids, _durations, _throughput]
    out = []
    for make in makers:
        made = make(summary)
        if made is not None:
            out.append(made)
    return out


def _layout(fig: Any, title: str, **extra: Any) -> Any:
    # the page's heading names the figure; the figure's own title would sit under its dropdown
    fig.update_layout(height=HEIGHT, template="plotly_white", margin=dict(l=60, r=30, t=60, b=50),
                      meta=dict(title=title), **extra)
    return fig


def _dropdown(fig: Any, labels: list[str], traces_per_view: int, relayouts: list[dict[str, Any]]) -> None:
    """A plotly dropdown showing one view (``traces_per_view`` consecutive traces) at a time."""
    n = len(labels) * traces_per_view
    buttons = []
    for i, (label, relayout) in enumerate(zip(labels, relayouts)):
        visible = [i * traces_per_view <= t < (i + 1) * traces_per_view for t in range(n)]
        buttons.append(dict(label=label, method="update", args=[{"visible": visible}, relayout]))
    for t, trace in enumerate(fig.data):
        trace.visible = t < traces_per_view
    if len(labels) > 1:
        fig.update_layout(updatemenus=[dict(buttons=buttons, x=0, xanchor="left", y=1.02, yanchor="bottom",
                                            showactive=True)])
    if relayouts:
        fig.update_layout(**{k.replace(".", "_"): v for k, v in relayouts[0].items()})


def _hover_counts(curve: Curve) -> list[str]:
    return [f"{n} psets" for n in curve.count]


def _failures_by_param(summary: Summary) -> Figure | None:
    if not summary.failure_by_param or not summary.failed:
        return None
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(specs=[[{"secondary_y": True}]])
    params = list(summary.failure_by_param)
    per_view = 2 if summary.duration_by_param else 1
    for p in params:
        curve = summary.failure_by_param[p]
        fig.add_trace(go.Bar(x=curve.x, y=curve.values["rate"], name="failure rate", marker_color=FAILED_COLOUR,
                             opacity=0.7, hovertext=_hover_counts(curve)), secondary_y=False)
        if per_view == 2:
            dur = summary.duration_by_param[p]
            fig.add_trace(go.Scatter(x=dur.x, y=dur.values["mean"], name="mean duration (s)", mode="lines+markers",
                                     marker_color=OK_COLOUR, hovertext=_hover_counts(dur)), secondary_y=True)
    relayouts = [{"xaxis.title.text": p} for p in params]
    _dropdown(fig, params, per_view, relayouts)
    fig.update_yaxes(title_text="failure rate", range=[0, 1], secondary_y=False)
    if per_view == 2:
        fig.update_yaxes(title_text="mean duration (s)", secondary_y=True)
    _layout(fig, "Failure rate and duration against a parameter", barmode="overlay")
    return Figure("failures-by-param", "Failure rate and duration by parameter",
                  "The fraction of psets that failed, and their mean duration, for each value (or bin) of the "
                  "chosen parameter.", fig)


def _explorer(summary: Summary) -> Figure | None:
    frame = summary.explorer
    if frame is None or not len(frame):
        return None
    import plotly.graph_objects as go

    dimensions = []
    for column in frame.columns:
        if column == "_status":
            continue
        values = frame[column]
        if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
            text = values.astype(object).map(lambda v: "" if v is None else str(v))
            labels = sorted(set(text))
            codes = text.map({label: i for i, label in enumerate(labels)})
            ticks = labels if len(labels) <= 20 else None
            dimensions.append(dict(label=str(column), values=codes.to_numpy(dtype=float),
                                   tickvals=list(range(len(labels))) if ticks else None, ticktext=ticks))
        else:
            dimensions.append(dict(label=str(column), values=values.to_numpy(dtype=float)))
    failed = (frame["_status"].to_numpy() != "ok").astype(float)
    dimensions.append(dict(label="failed", values=failed, tickvals=[0, 1], ticktext=["ok", "failed"]))
    fig = go.Figure(go.Parcoords(dimensions=dimensions,
                                 line=dict(color=failed, colorscale=[[0, OK_COLOUR], [1, FAILED_COLOUR]])))
    sampled = f" (a random sample of {len(frame)} of {summary.explorer_rows} psets)" if \
        summary.explorer_rows > len(frame) else ""
    _layout(fig, f"Parameters and results{sampled}")
    return Figure("explorer", "Results explorer: parallel coordinates",
                  "One line per pset across its parameters and results; failed psets in red. Drag along an "
                  "axis to select a range." + sampled, fig)


def _result_lines(summary: Summary) -> Figure | None:
    if not summary.result_by_param:
        return None
    import plotly.graph_objects as go

    fig = go.Figure()
    labels, relayouts = [], []
    for (result, param), curve in summary.result_by_param.items():
        band_x = list(curve.x) + list(curve.x)[::-1]
        band_y = list(curve.values["max"]) + list(curve.values["min"])[::-1]
        fig.add_trace(go.Scatter(x=band_x, y=band_y, fill="toself", fillcolor="rgba(31,119,180,0.15)",
                                 line=dict(width=0), name="min to max", hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=curve.x, y=curve.values["mean"], mode="lines+markers", name=f"mean {result}",
                                 marker_color=OK_COLOUR, hovertext=_hover_counts(curve)))
        labels.append(f"{result} against {param}")
        relayouts.append({"xaxis.title.text": param + (" (binned)" if curve.binned else ""),
                          "yaxis.title.text": result})
    _dropdown(fig, labels, 2, relayouts)
    _layout(fig, "A result against one parameter")
    return Figure("result-lines", "A result against one parameter",
                  "The mean of the chosen result (and its range, shaded) for each value or bin of the chosen "
                  "parameter, over the psets that returned it.", fig)


def _result_grids(summary: Summary) -> Figure | None:
    if not summary.result_grids:
        return None
    import plotly.graph_objects as go

    fig = go.Figure()
    labels, relayouts = [], []
    for (result, a, b), grid in summary.result_grids.items():
        fig.add_trace(go.Heatmap(x=grid.x, y=grid.y, z=grid.z, colorscale="Viridis",
                                 colorbar=dict(title=dict(text=result)), name=result))
        labels.append(f"{result} against {a} and {b}")
        relayouts.append({"xaxis.title.text": a, "yaxis.title.text": b})
    _dropdown(fig, labels, 1, relayouts)
    _layout(fig, "A result against two parameters (mean)")
    return Figure("result-grids", "A result against two parameters",
                  "The mean of the chosen result for each pair of values (or bins) of two parameters.", fig)


def _durations(summary: Summary) -> Figure | None:
    if summary.durations is None:
        return None
    import plotly.graph_objects as go

    edges, counts = summary.durations
    e = np.asarray(edges)
    log = e[-1] > e[0] * 100 and e[0] > 0
    centres = np.sqrt(e[:-1] * e[1:]) if log else (e[:-1] + e[1:]) / 2
    fig = go.Figure(go.Bar(x=centres, y=counts, width=np.diff(e), marker_color=OK_COLOUR, name="psets",
                           hovertext=[f"{lo:.3g} to {hi:.3g} s" for lo, hi in zip(e[:-1], e[1:])]))
    _layout(fig, "Pset durations", xaxis_title="seconds" + (" (log scale)" if log else ""), yaxis_title="psets",
            bargap=0)
    if log:
        fig.update_xaxes(type="log")
    return Figure("durations", "Distribution of pset durations",
                  f"How long each pset's latest run took (wall clock), in {len(counts)} bins.", fig)


def _throughput(summary: Summary) -> Figure | None:
    frame = summary.throughput
    if frame is None or not len(frame):
        return None
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(specs=[[{"secondary_y": True}]])
    when = frame["time"].dt.tz_convert(None)
    width = 2 * (frame["end"] - frame["time"]).dt.total_seconds().iloc[0] * 1000  # a date axis: milliseconds
    fig.add_trace(go.Bar(x=when, y=frame["ok"], name="ok per second", marker_color=OK_COLOUR, width=width),
                  secondary_y=False)
    if frame["failed"].any():
        fig.add_trace(go.Bar(x=when, y=frame["failed"], name="failed per second", marker_color=FAILED_COLOUR,
                             width=width),
                      secondary_y=False)
    ends = frame["end"].dt.tz_convert(None)
    first = ends.iloc[0] - (ends.iloc[0] - when.iloc[0]) * 2  # the first bin's start: the total is 0 there
    fig.add_trace(go.Scatter(x=[first, *ends], y=[0, *frame["cumulative"].tolist()], name="finished (cumulative)",
                             mode="lines",
                             line=dict(color="#2ca02c")), secondary_y=True)
    fig.update_yaxes(title_text="psets per second", secondary_y=False)
    fig.update_yaxes(title_text="psets finished", rangemode="tozero", secondary_y=True)
    _layout(fig, "Throughput over time (UTC)", barmode="stack", bargap=0)
    return Figure("throughput", "Throughput over time",
                  "Psets finished per second (every outcome written, resumes included), and the running total.",
                  fig)
