"""The seed baseline: how many features two SAEs trained on the *same* activations share.

TopK SAEs trained with different seeds on the same stream share only part of their features
(Paulo & Belrose 2025), so a cross-checkpoint shared fraction reads only beside the
same-checkpoint, different-seed one. The train stage's ``saes.seeds`` trains seed-s twins
(``<sae_id>_s<s>``, cfg.json metadata ``sae_seed`` / ``seed_group``) in the same pass; here each
checkpoint's reference SAE (the lowest seed, normally 0) is matched against every twin with
the cross-checkpoint matching (:func:`llmjp_ckpt.compare.matching.match_decoders`, same
threshold and alive masks), and every cross-checkpoint pair of the group is set beside it:
``baseline`` is the mean of the cross-seed fractions at its two ends, ``ratio`` its shared
fraction over that baseline (1: as reproducible across checkpoints as across seeds).
"""

from __future__ import annotations

import html
import logging
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from llmjp_ckpt import plotting
from llmjp_ckpt.compare.decoders import load_decoder
from llmjp_ckpt.compare.matching import MatchConfig, match_decoders, write_matches_csv
from llmjp_ckpt.config import read_json
from llmjp_ckpt.runfolder import step_dir

log = logging.getLogger(__name__)


def seed_of(sae_id: str, folder: Path) -> tuple[str, int]:
    """``(seed_group, seed)`` of one SAE from its cfg.json metadata (no metadata: its own group,
    seed 0)."""
    try:
        meta = read_json(folder / "cfg.json").get("metadata") or {}
    except Exception:  # noqa: BLE001 - an unreadable cfg.json is reported by load_decoder
        meta = {}
    seed = meta.get("sae_seed", 0)
    group = meta.get("seed_group", sae_id)
    if not isinstance(seed, int) or not isinstance(group, str) or not group:
        return sae_id, 0
    return group, seed


def seed_groups(series: dict[str, list[tuple[int, Path]]]) -> dict[str, dict[int, dict[int, Path]]]:
    """``{seed_group: {seed: {step: folder}}}`` for the groups with at least two seeds."""
    out: dict[str, dict[int, dict[int, Path]]] = {}
    for sae_id, ser in series.items():
        for step, folder in ser:
            group, seed = seed_of(sae_id, folder)
            out.setdefault(group, {}).setdefault(seed, {})[step] = folder
    return {g: dict(sorted(v.items())) for g, v in sorted(out.items()) if len(v) > 1}


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def seed_baseline(series: dict[str, list[tuple[int, Path]]], families: dict[str, Any],
                  cfg: MatchConfig, matches_dir: Path | None = None) -> dict[str, Any]:
    """Per seed group: the cross-seed shared fraction per checkpoint and every cross-checkpoint
    pair of the group's families beside it (also written into those pairs as
    ``seed_baseline`` / ``shared_fraction_ratio``)."""
    out: dict[str, Any] = {}
    for group, by_seed in seed_groups(series).items():
        ref, others = next(iter(by_seed)), list(by_seed)[1:]
        rows: list[dict[str, Any]] = []
        for step in sorted(by_seed[ref]):
            a = load_decoder(by_seed[ref][step])
            fracs, sims = [], []
            row: dict[str, Any] = {"checkpoint": step}
            for seed in others:
                if step not in by_seed[seed]:
                    continue
                b = load_decoder(by_seed[seed][step])
                log.info("%s: matching seed %d against seed %d at step %d", group, ref, seed, step)
                m = match_decoders(a, b, cfg)
                if matches_dir is not None:
                    name = f"{step_dir(step)}__s{ref}__s{seed}.csv"
                    write_matches_csv(m, matches_dir / group / name)
                fracs.append(m.shared_fraction)
                sims += m.similarity[m.partner >= 0].tolist()
                row[f"shared_fraction_s{seed}"] = m.shared_fraction
            if not fracs:
                continue
            row["cross_seed_shared_fraction"] = _mean(fracs)
            row["min"], row["max"] = float(min(fracs)), float(max(fracs))
            row["mean_similarity"] = _mean(sims)
            rows.append(row)
        base = {r["checkpoint"]: r["cross_seed_shared_fraction"] for r in rows}
        pairs = []
        ids = [i for i in series if seed_of(i, series[i][0][1])[0] == group]
        for sae_id in ids:
            for p in families.get(sae_id, {}).get("pairs", []):
                ends = [base[s] for s in (p["from"], p["to"]) if s in base]
                b = _mean(ends)
                sf = p.get("shared_fraction")
                ratio = (sf / b) if (b and sf is not None) else None
                p["seed_baseline"] = b
                p["shared_fraction_ratio"] = ratio
                pairs.append({"sae_id": sae_id, "from": p["from"], "to": p["to"],
                              "shared_fraction": sf, "baseline_from": base.get(p["from"]),
                              "baseline_to": base.get(p["to"]), "baseline": b, "ratio": ratio})
        out[group] = {"reference_seed": ref, "seeds": list(by_seed), "threshold": cfg.threshold,
                      "per_checkpoint": rows, "cross_checkpoint": pairs}
    return out


def baseline_figure(group: str, entry: dict[str, Any]) -> go.Figure:
    """Cross-checkpoint shared fraction (at each pair's later step) over the cross-seed band."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.65, 0.35],
                        subplot_titles=("shared fraction", "cross-checkpoint / cross-seed"))
    rows = entry["per_checkpoint"]
    x = [r["checkpoint"] for r in rows]
    band = [r["max"] for r in rows] + [r["min"] for r in rows][::-1]
    fig.add_trace(go.Scatter(x=x + x[::-1], y=band, fill="toself", line={"width": 0},
                             fillcolor="rgba(128,128,128,0.25)", name="cross-seed range",
                             hoverinfo="skip"), row=1, col=1)
    fig.add_trace(go.Scatter(x=x, y=[r["cross_seed_shared_fraction"] for r in rows],
                             mode="lines+markers", line={"dash": "dash", "color": "grey"},
                             name="cross-seed (same checkpoint)"), row=1, col=1)
    by_id: dict[str, list[dict[str, Any]]] = {}
    for p in entry["cross_checkpoint"]:
        by_id.setdefault(p["sae_id"], []).append(p)
    palette = ["#00a087", "#f39b7f", "#3c5488", "#e64b35", "#4dbbd5", "#8491b4"]
    for n, (sae_id, ps) in enumerate(by_id.items()):
        colour = {"color": palette[n % len(palette)]}
        text = [f"{p['from']} → {p['to']}" for p in ps]
        fig.add_trace(go.Scatter(x=[p["to"] for p in ps], y=[p["shared_fraction"] for p in ps],
                                 text=text, mode="lines+markers", line=colour,
                                 name=f"cross-checkpoint {html.escape(sae_id)}"), row=1, col=1)
        fig.add_trace(go.Scatter(x=[p["to"] for p in ps], y=[p["ratio"] for p in ps], text=text,
                                 mode="lines+markers", showlegend=False, line=colour,
                                 name=f"ratio {html.escape(sae_id)}"), row=2, col=1)
    fig.add_hline(y=1.0, line_dash="dot", row=2, col=1)
    fig.update_xaxes(type="log", title_text="training step (a pair at its later step)",
                     row=2, col=1)
    fig.update_xaxes(type="log", row=1, col=1)
    fig.update_yaxes(range=[0, 1], row=1, col=1)
    title = f"Seed baseline (cosine ≥ {entry['threshold']}) — {html.escape(group)}"
    fig.update_layout(title=title, width=1000, height=650)
    return fig


def figures(baseline: dict[str, Any]) -> dict[str, go.Figure]:
    """One ``seed_baseline_<group>`` figure per seed group."""
    return {f"seed_baseline_{plotting.safe_name(g)}": baseline_figure(g, e)
            for g, e in baseline.items() if e["per_checkpoint"]}
