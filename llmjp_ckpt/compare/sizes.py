"""The model-size view: the same analysis of several runs (one model size each) side by side.

Each run is a finished ``compare`` (its ``RUN/analysis/transitions.json``); runs trained with the
same grid have the same SAE ids, so every id present in all runs gets one row of panels: per run
(model), the class shares of the alive features over the checkpoints, and the shared fraction
of each consecutive pair. ``llmjp-ckpt sizes --run A --run B --out DIR`` writes
``DIR/sizes.json`` and one figure per SAE id and class column.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import plotly.colors as px_colors
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from llmjp_ckpt import plotting
from llmjp_ckpt.config import read_json
from llmjp_ckpt.errors import UserError
from llmjp_ckpt.runfolder import RunFolder

SUBSET = "alive"
COLUMNS = ("language_paper", "language_script", "granularity")


def _model_of(run: Path) -> str:
    rec = RunFolder(run).stage_record("train") or {}
    model = ((rec.get("config") or {}).get("config") or {}).get("model") or {}
    return str(model.get("source") or run.name)


def size_view(runs: Sequence[str | Path], labels: Sequence[str] | None = None) -> dict[str, Any]:
    """``{runs: [...], families: {sae_id: {label: {shares, shared_fraction}}}}`` over the SAE ids
    every run has; a :class:`UserError` when a run has no transitions.json or none are shared."""
    paths = [Path(r) for r in runs]
    if len(paths) < 2:
        raise UserError("sizes: expected at least two runs (--run A --run B)")
    names = list(labels) if labels else [_model_of(p) for p in paths]
    if len(names) != len(paths) or len(set(names)) != len(names):
        raise UserError(f"sizes: labels {names}: expected one distinct label per run")
    data = []
    for p in paths:
        t = p / "analysis" / "transitions.json"
        if not t.is_file():
            raise UserError(f"{t}: missing (expected a run with `llmjp-ckpt compare` done)")
        data.append(read_json(t)["families"])
    common = sorted(set.intersection(*(set(d) for d in data)))
    if not common:
        raise UserError(f"sizes: the runs share no SAE id ({', '.join(map(str, paths))}): expected the same grid")
    out: dict[str, Any] = {"runs": [{"label": n, "run": str(p)} for n, p in zip(names, paths)], "families": {}}
    for sae_id in common:
        out["families"][sae_id] = {}
        for name, fams in zip(names, data):
            fam = fams[sae_id]
            per = fam["per_checkpoint"].get(SUBSET, {})
            out["families"][sae_id][name] = {
                "checkpoints": fam["checkpoints"],
                "shares": {c: {s: per[s][c] for s in per} for c in COLUMNS},
                "shared_fraction": {f"{p['from']}→{p['to']}": p["shared_fraction"] for p in fam.get("pairs", [])},
            }
    return out


def figures(view: dict[str, Any]) -> dict[str, go.Figure]:
    """Per SAE id and class column: one panel per run, a line per class over the checkpoints."""
    palette = px_colors.qualitative.Plotly + px_colors.qualitative.Dark2
    out: dict[str, go.Figure] = {}
    for sae_id, by_run in view["families"].items():
        safe = plotting.safe_name(sae_id)
        for col in COLUMNS:
            fig = make_subplots(rows=1, cols=len(by_run), shared_yaxes=True, subplot_titles=list(by_run))
            colour: dict[str, str] = {}
            for i, (name, v) in enumerate(by_run.items(), start=1):
                steps = sorted(v["shares"][col], key=int)
                for k in sorted({k for s in steps for k in v["shares"][col][s]}):
                    first = k not in colour
                    colour.setdefault(k, palette[len(colour) % len(palette)])
                    y = [v["shares"][col][s].get(k, 0.0) for s in steps]
                    fig.add_trace(go.Scatter(x=[int(s) for s in steps], y=y, mode="lines+markers", name=k,
                                             legendgroup=k, showlegend=first, line={"color": colour[k]}),
                                  row=1, col=i)
            fig.update_xaxes(type="log", title_text="training step")
            fig.update_yaxes(range=[0, 1])
            fig.update_layout(title=f"{col} shares (alive features) by model — {html.escape(sae_id)}",
                              width=max(700, 420 * len(by_run)), height=420)
            out[f"sizes_{col}_{safe}"] = fig
    return out
