"""The grid report (the study's preliminary experiment): FVU and dead fraction over expansion x K.

Reads every ``RUN/saes/iter_XXXXXXX/<sae_id>/metrics.json``, keeps the best learning rate per
(checkpoint, normalisation, expansion, K) cell (lowest FVU), and writes
``RUN/analysis/grid/grid.csv`` (every SAE), ``best.csv`` (best lr per cell) and
``grid_report.html``: the table and plotly heatmaps, plotly.js inline so it works offline.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from llmjp_ckpt import atomic
from llmjp_ckpt.config import read_json
from llmjp_ckpt.errors import UserError
from llmjp_ckpt.runfolder import sae_folders

COLUMNS = [
    "checkpoint_step",
    "token_norm",
    "expansion",
    "k",
    "lr",
    "fvu",
    "dead_fraction",
    "dense_fraction",
    "l0",
    "explained_variance",
    "ce_loss_score",
    "kl_div_score",
    "sae_id",
]


def collect(run: str | Path) -> Any:
    """All SAE metrics of a run as a DataFrame (one row per SAE)."""
    import pandas as pd

    rows = []
    for _, _, folder in sae_folders(run):
        if (folder / "metrics.json").is_file():
            m = read_json(folder / "metrics.json")
            rows.append({c: m.get(c) for c in COLUMNS})
    if not rows:
        raise UserError(f"{Path(run, 'saes')}: no SAE with metrics.json: train first")
    return pd.DataFrame(rows, columns=COLUMNS)


def best_per_cell(df: Any) -> Any:
    """The lowest-FVU learning rate of every (step, normalisation, expansion, K) cell."""
    keys = ["checkpoint_step", "token_norm", "expansion", "k"]
    idx = df.sort_values("fvu").groupby(keys, dropna=False).head(1).index
    return df.loc[idx].sort_values(keys).reset_index(drop=True)


def heatmaps(best: Any) -> list[Any]:
    """One plotly figure per (step, normalisation): FVU and dead fraction over expansion x K."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    figs = []
    for (step, norm), cell in best.groupby(["checkpoint_step", "token_norm"], dropna=False):
        fig = make_subplots(
            rows=1,
            cols=2,
            subplot_titles=("FVU (best lr)", "dead fraction (best lr)"),
            horizontal_spacing=0.15,
        )
        for col, metric, scale in ((1, "fvu", "Viridis"), (2, "dead_fraction", "Reds")):
            pivot = cell.pivot(index="expansion", columns="k", values=metric).sort_index()
            fig.add_trace(go.Heatmap(
                z=pivot.values, x=[f"K={k}" for k in pivot.columns], y=[f"x{e}" for e in pivot.index],
                colorscale=scale, text=[[f"{v:.3f}" for v in row] for row in pivot.values], texttemplate="%{text}",
                colorbar={"x": 0.43 if col == 1 else 1.0},
            ), row=1, col=col)
        fig.update_layout(title=f"checkpoint {step}, normalisation {norm}", height=420, width=900)
        figs.append(fig)
    return figs


def write_report(run: str | Path) -> Path:
    """Write RUN/analysis/grid/{grid.csv,best.csv,grid_report.html}; return the HTML path."""
    df = collect(run)
    best = best_per_cell(df)
    out = Path(run, "analysis", "grid")
    atomic.write_text(out / "grid.csv", df.to_csv(index=False))
    atomic.write_text(out / "best.csv", best.to_csv(index=False))
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>SAE grid</title></head><body>",
        "<h1>SAE grid: FVU and dead fraction over expansion &times; K</h1>",
        "<p>Best learning rate per cell (lowest FVU on the val split).</p>",
        best.to_html(index=False, float_format=lambda v: f"{v:.4g}", escape=True),
    ]
    for i, fig in enumerate(heatmaps(best)):
        parts.append(fig.to_html(full_html=False, include_plotlyjs=(i == 0)))
    parts.append(f"<p>{html.escape(str(len(df)))} SAEs in all; every SAE in grid.csv.</p></body></html>")
    return atomic.write_text(out / "grid_report.html", "\n".join(parts))
