"""Plotly figures of the comparison: shares over steps, Sankey flows, match similarities, mix origins.

They are written by :func:`llmjp_ckpt.plotting.write_figures` (re-exported here).
"""

from __future__ import annotations

import html
import logging

import plotly.colors as px_colors
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from llmjp_ckpt.compare.lineages import MIX_ORIGINS
from llmjp_ckpt.plotting import write_figures

log = logging.getLogger(__name__)

__all__ = ["write_figures"]  # with the figure builders below

SHARE_COLUMNS = ("language_paper", "language_script", "granularity")
BAND_NOTE = ("lines: shares as labelled; bands: 95% bootstrap intervals over latents and, for "
             "granularity, the classifier's LOCO confusion (a band off its line: a known bias)")


def shares_figure(per_ckpt: dict, sae_id: str) -> go.Figure:
    """The study's share-over-steps plots: one row per subset, one column per class kind."""
    subsets = list(per_ckpt)
    fig = make_subplots(rows=len(subsets), cols=len(SHARE_COLUMNS), shared_xaxes=True,
                        subplot_titles=[f"{c} ({s})" for s in subsets for c in SHARE_COLUMNS])
    palette = px_colors.qualitative.Plotly + px_colors.qualitative.Dark2
    colour: dict[str, str] = {}
    for r, subset in enumerate(subsets, start=1):
        steps = sorted(per_ckpt[subset], key=int)
        for c, col in enumerate(SHARE_COLUMNS, start=1):
            classes = sorted({k for s in steps for k in per_ckpt[subset][s][col]})
            for k in classes:
                first = k not in colour
                colour.setdefault(k, palette[len(colour) % len(palette)])
                x = [int(s) for s in steps]
                ivs = [per_ckpt[subset][s].get("intervals", {}).get(col, {}).get(k) for s in steps]
                if all(ivs):  # the bootstrap band (older transitions.json: none)
                    fig.add_trace(go.Scatter(
                        x=x + x[::-1], y=[i["hi"] for i in ivs] + [i["lo"] for i in ivs][::-1],
                        fill="toself", fillcolor=colour[k], opacity=0.2, mode="lines",
                        line={"width": 0}, hoverinfo="skip", legendgroup=k, showlegend=False,
                        name=f"{k} interval"), row=r, col=c)
                fig.add_trace(go.Scatter(
                    x=x, y=[per_ckpt[subset][s][col].get(k, 0.0) for s in steps],
                    mode="lines+markers", name=k, legendgroup=k, showlegend=first,
                    line={"color": colour[k]},
                    customdata=[[i["lo"], i["hi"]] if i else [None, None] for i in ivs],
                    hovertemplate=f"{html.escape(k)}: %{{y:.3f}} [%{{customdata[0]:.3f}}–"
                                  "%{customdata[1]:.3f}]<extra>step %{x}</extra>",
                ), row=r, col=c)
    fig.update_xaxes(type="log", title_text="training step")
    fig.update_yaxes(range=[0, 1])
    fig.update_layout(title=f"Class shares over training steps — {html.escape(sae_id)}<br><sup>"
                            f"{BAND_NOTE}</sup>",
                      height=320 * len(subsets) + 60, width=1200, margin={"t": 110})
    return fig


def sankey_figure(flows: list[dict], column: str, sae_id: str) -> go.Figure:
    """Flows of ``column`` classes between consecutive checkpoints, for shared features."""
    nodes: dict[str, int] = {}
    src, dst, val = [], [], []

    def node(label: str) -> int:
        return nodes.setdefault(label, len(nodes))

    for f in flows:
        for key, n in f[column].items():
            a, b = key.split(" -> ")
            src.append(node(f"{a} @{f['from']}"))
            dst.append(node(f"{b} @{f['to']}"))
            val.append(n)
    fig = go.Figure(go.Sankey(node={"label": list(nodes), "pad": 12},
                              link={"source": src, "target": dst, "value": val}))
    fig.update_layout(title=f"{column} flows of shared features — {html.escape(sae_id)}",
                      width=1100, height=600)
    return fig


def similarity_histogram(similarities: dict[str, list[float]], threshold: float, sae_id: str) -> go.Figure:
    """Histogram of matched pairs' cosine, one trace per checkpoint pair."""
    fig = go.Figure()
    for name, sims in similarities.items():
        fig.add_trace(go.Histogram(x=sims, name=name, opacity=0.6, xbins={"start": -1, "end": 1, "size": 0.02}))
    fig.add_vline(x=threshold, line_dash="dash", annotation_text=f"shared ≥ {threshold}")
    fig.update_layout(barmode="overlay", title=f"Match similarity — {html.escape(sae_id)}",
                      xaxis_title="cosine of decoder directions", yaxis_title="matched pairs",
                      width=900, height=500)
    return fig


def mix_origins_figure(origins: list[dict], sae_id: str) -> go.Figure:
    """Stacked shares of where each later checkpoint's mix features came from."""
    names = [f"{o['from']} → {o['to']} (n={o['n_mix']})" for o in origins]
    fig = go.Figure([go.Bar(x=names, y=[o["shares"][k] for o in origins], name=k) for k in MIX_ORIGINS])
    fig.update_layout(barmode="stack", yaxis_title="share of mix features", yaxis_range=[0, 1],
                      title=f"Origins of bilingual (mix) features — {html.escape(sae_id)}",
                      width=900, height=500)
    return fig
