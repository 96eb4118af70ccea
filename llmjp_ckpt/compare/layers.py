"""The layer view of a layer sweep: each grid cell's families side by side, one per layer.

A sweep (``hook_layer: [6, 12, 18]``) trains every grid cell at each layer; the train stage
writes ``layer_group`` (the cell's id without ``_L{layer}``) and ``hook_layer`` into each
SAE's cfg.json metadata. Compare matches each layer's family on its own (transitions per
layer, as for any family) and here sets them side by side: per group, per layer, the class
shares of the alive features at every checkpoint (a layer × checkpoint table of the language
and granularity shares) and each consecutive pair's shared fraction.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from llmjp_ckpt import plotting
from llmjp_ckpt.compare.transitions import CLASS_COLUMNS
from llmjp_ckpt.config import read_json

SUBSET = "alive"  # shares of features that fire (saes.dead), as the headline figures use


def layer_of(sae_id: str, folder: Path) -> tuple[str, int | str] | None:
    """``(layer_group, layer)`` of one SAE of a sweep from its cfg.json metadata; ``None`` when
    it was not trained in a sweep."""
    try:
        meta = read_json(folder / "cfg.json").get("metadata") or {}
    except Exception:  # noqa: BLE001 - an unreadable cfg.json is reported by load_decoder
        return None
    group, layer = meta.get("layer_group"), meta.get("hook_layer")
    if not isinstance(group, str) or not group or isinstance(layer, bool) or not isinstance(layer, (int, str)):
        return None
    return group, layer


def _order(layer: int | str) -> tuple[int, str]:
    if isinstance(layer, int):
        return layer, ""
    m = re.match(r"^blocks\.(\d+)\.", layer)
    return (int(m.group(1)) + 1 if m else 10**6), layer


def layer_view(series: dict[str, list[tuple[int, Path]]], families: dict[str, Any]) -> dict[str, Any]:
    """``{layer_group: {layers, sae_ids, checkpoints, shares, shared_fraction}}`` for every
    group of a sweep (empty when the run has none).

    ``shares[column][layer][step]`` is the ``{class: share}`` of the alive features;
    ``shared_fraction[layer]["a→b"]`` the matching's shared fraction of that pair.
    """
    groups: dict[str, dict[int | str, str]] = {}
    for sae_id, ser in series.items():
        tag = layer_of(sae_id, ser[0][1])
        if tag is not None and sae_id in families:
            groups.setdefault(tag[0], {})[tag[1]] = sae_id
    out: dict[str, Any] = {}
    for group, by_layer in sorted(groups.items()):
        layers = sorted(by_layer, key=_order)
        steps = sorted({s for x in layers for s in families[by_layer[x]]["checkpoints"]})
        view: dict[str, Any] = {"layers": layers, "sae_ids": {str(x): by_layer[x] for x in layers},
                                "checkpoints": steps, "shares": {c: {} for c in CLASS_COLUMNS},
                                "shared_fraction": {}}
        for layer in layers:
            fam = families[by_layer[layer]]
            per = fam["per_checkpoint"].get(SUBSET, {})
            for col in CLASS_COLUMNS:
                view["shares"][col][str(layer)] = {step: per[step][col] for step in per}
            view["shared_fraction"][str(layer)] = {f"{p['from']}→{p['to']}": p["shared_fraction"]
                                                   for p in fam.get("pairs", [])}
        out[group] = view
    return out


def figures(view: dict[str, Any], columns: tuple[str, ...] = ("language_paper", "granularity")) -> dict[str, go.Figure]:
    """Per group: one layer × checkpoint heatmap per class of each column, and the shared
    fraction of each checkpoint pair per layer."""
    out: dict[str, go.Figure] = {}
    for group, v in view.items():
        safe = plotting.safe_name(group)
        layers = [str(x) for x in v["layers"]]
        steps = [str(s) for s in v["checkpoints"]]
        for col in columns:
            table = v["shares"][col]
            classes = sorted({k for x in layers for s in table[x].values() for k in s})
            if not classes:
                continue
            fig = make_subplots(rows=1, cols=len(classes), subplot_titles=classes, shared_yaxes=True)
            for i, cls in enumerate(classes, start=1):
                z = [[table[x].get(s, {}).get(cls) for s in steps] for x in layers]
                fig.add_trace(go.Heatmap(z=z, x=steps, y=[f"L{x}" for x in layers], zmin=0, zmax=1,
                                         coloraxis="coloraxis", texttemplate="%{z:.2f}"), row=1, col=i)
            fig.update_xaxes(type="category", title_text="training step")
            fig.update_layout(title=f"{col} shares (alive features) by layer and checkpoint — {html.escape(group)}",
                              coloraxis={"colorscale": "Viridis", "cmin": 0, "cmax": 1},
                              width=max(600, 320 * len(classes)), height=180 + 60 * len(layers))
            out[f"layers_{col}_{safe}"] = fig
        pairs = sorted({p for x in layers for p in v["shared_fraction"][x]},
                       key=lambda p: tuple(int(t) for t in p.split("→")))
        if pairs:
            z = [[v["shared_fraction"][x].get(p) for p in pairs] for x in layers]
            fig = go.Figure(go.Heatmap(z=z, x=pairs, y=[f"L{x}" for x in layers], zmin=0, zmax=1,
                                       colorscale="Viridis", texttemplate="%{z:.2f}"))
            fig.update_xaxes(type="category", title_text="checkpoint pair")
            fig.update_layout(title=f"Shared fraction by layer — {html.escape(group)}",
                              width=max(600, 160 * len(pairs)), height=180 + 60 * len(layers))
            out[f"layers_shared_fraction_{safe}"] = fig
    return out


def table_rows(view: dict[str, Any], column: str = "language_paper") -> list[dict[str, Any]]:
    """Flat rows (group, layer, checkpoint, class, share) for printing or a CSV."""
    rows = []
    for group, v in view.items():
        for layer in map(str, v["layers"]):
            for step, shares in v["shares"][column][layer].items():
                rows += [{"group": group, "layer": layer, "checkpoint": int(step), "class": k, "share": s}
                         for k, s in sorted(shares.items())]
    return rows
