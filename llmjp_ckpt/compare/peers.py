"""Ours against a peer's SAEs (the study authors', imported by ``import-peer``), per checkpoint.

Peer SAEs sit in ``PEER/iter_XXXXXXX/<peer_id>/`` in SAELens format (``llmjp-ckpt import-peer
SRC --out RUN/peer/iter_XXXXXXX/<peer_id>``); ``PEER`` is the compare config's ``peer_dir``,
else ``RUN/peer`` when it exists. At every checkpoint where a peer SAE and one of our SAEs read
the same hook with the same width, the peer's features are matched one to one against ours
(:func:`llmjp_ckpt.compare.matching.match_decoders`, the cross-checkpoint matching with its
threshold): ``found`` is how many of the peer's features have a partner of ours at cosine ≥
the threshold, ``found_fraction`` that over the peer's features, and the cosines say how close
(the matched pairs' median, and each peer feature's nearest of ours). Peer SAEs carry no firing
counts, so every peer feature with a direction counts; ours keep their alive masks.
"""

from __future__ import annotations

import html
import logging
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go

from llmjp_ckpt import plotting
from llmjp_ckpt.compare.decoders import load_decoder
from llmjp_ckpt.compare.matching import MatchConfig, match_decoders, write_matches_csv
from llmjp_ckpt.errors import UserError
from llmjp_ckpt.runfolder import STEP_DIR_RE, step_dir

log = logging.getLogger(__name__)
PEER_DIR = "peer"  # RUN/peer: the default place of imported peer SAEs


def peer_root(run: Path, peer_dir: str | None) -> Path | None:
    """The folder of peer SAEs in force: ``peer_dir`` (relative to RUN or absolute; it must
    exist), else ``RUN/peer`` when it exists, else ``None``."""
    if peer_dir is not None:
        path = Path(peer_dir)
        path = path if path.is_absolute() else run / path
        if not path.is_dir():
            raise UserError(f"compare config: peer_dir={peer_dir!r}: {path} is not a folder "
                            "(expected iter_XXXXXXX/<peer_id>/ SAEs from `llmjp-ckpt import-peer`)")
        return path
    path = run / PEER_DIR
    return path if path.is_dir() else None


def find_peers(root: Path) -> dict[str, dict[int, Path]]:
    """``{peer_id: {step: folder}}`` of the SAELens-format folders under ``root/iter_*/``."""
    out: dict[str, dict[int, Path]] = {}
    for sd in sorted(root.glob("iter_*")):
        m = STEP_DIR_RE.match(sd.name)
        if not m or not sd.is_dir():
            continue
        for folder in sorted(sd.iterdir()):
            if not folder.name.startswith(".") and (folder / "cfg.json").is_file():
                out.setdefault(folder.name, {})[int(m.group(1))] = folder
    return out


def _median(x: np.ndarray) -> float | None:
    x = x[np.isfinite(x)]
    return float(np.median(x)) if x.size else None


def compare_peers(series: dict[str, list[tuple[int, Path]]], peers: dict[str, dict[int, Path]],
                  cfg: MatchConfig, matches_dir: Path | None = None) -> dict[str, Any]:
    """Per peer SAE: one row per (checkpoint, our SAE) with how many of its features ours finds."""
    out: dict[str, Any] = {}
    for peer_id, by_step in sorted(peers.items()):
        rows: list[dict[str, Any]] = []
        notes: list[str] = []
        for step, folder in sorted(by_step.items()):
            theirs = load_decoder(folder, require_counts=False)
            ours_here = [(sid, p) for sid, ser in series.items() for s, p in ser if s == step]
            if not ours_here:
                notes.append(f"step {step}: none of our SAEs at this checkpoint")
            for sae_id, ours_path in ours_here:
                ours = load_decoder(ours_path)
                if (ours.hook_name, ours.d_in) != (theirs.hook_name, theirs.d_in):
                    notes.append(f"step {step}: {sae_id} reads {ours.hook_name} (d_in {ours.d_in}), the peer "
                                 f"{theirs.hook_name} (d_in {theirs.d_in}): not compared")
                    continue
                log.info("peer %s: matching against %s at step %d", peer_id, sae_id, step)
                m = match_decoders(theirs, ours, cfg)
                if matches_dir is not None:
                    write_matches_csv(m, matches_dir / peer_id / sae_id / f"{step_dir(step)}.csv")
                n = int(m.alive_a.sum())
                found = int(m.shared.sum())
                rows.append({
                    "checkpoint": step, "sae_id": sae_id, "peer_features": n, "our_features": int(m.alive_b.sum()),
                    "found": found, "found_fraction": found / n if n else 0.0,
                    "median_cosine_found": _median(m.similarity[m.shared]),
                    "median_cosine_matched": _median(m.similarity[m.partner >= 0]),
                    "median_nearest_cosine": _median(m.nearest_similarity[m.alive_a]),
                    "method": m.method, "peer_weights_hash": theirs.weights_hash,
                    "sae_weights_hash": ours.weights_hash,
                })
        out[peer_id] = {"threshold": cfg.threshold, "per_checkpoint": rows, "notes": notes,
                        "folders": {str(s): str(p) for s, p in sorted(by_step.items())}}
    return out


def figures(result: dict[str, Any]) -> dict[str, go.Figure]:
    """One ``peer_<peer_id>`` figure per peer: found fraction per checkpoint, a line per SAE of ours."""
    out: dict[str, go.Figure] = {}
    for peer_id, entry in result.items():
        rows = entry["per_checkpoint"]
        if not rows:
            continue
        fig = go.Figure()
        for sae_id in sorted({r["sae_id"] for r in rows}):
            mine = [r for r in rows if r["sae_id"] == sae_id]
            fig.add_trace(go.Scatter(
                x=[r["checkpoint"] for r in mine], y=[r["found_fraction"] for r in mine],
                text=[f"{r['found']}/{r['peer_features']}; median cosine {r['median_cosine_found']}" for r in mine],
                mode="lines+markers", name=html.escape(sae_id)))
        fig.update_xaxes(type="log", title_text="training step")
        fig.update_yaxes(range=[0, 1], title_text=f"peer features found (cosine ≥ {entry['threshold']})")
        fig.update_layout(title=f"How many of {html.escape(peer_id)}'s features ours find", width=900, height=500)
        out[f"peer_{plotting.safe_name(peer_id)}"] = fig
    return out
