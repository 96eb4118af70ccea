"""Ours against the study's (peer) SAEs, for the index (``peers.html``).

Read from ``transitions.json``'s ``peers`` entry (:mod:`llmjp_ckpt.compare.peers`): per peer and
checkpoint, how many of its features ours find and at what cosine, with a link to our SAE's
feature browser and to the peer SAE's folder. Left out when compare saw no peer SAEs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmjp_ckpt import plotting
from llmjp_ckpt.config import read_json
from llmjp_ckpt.site.render import browser_name


def _num(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def peer_context(run: Path, figs: list[Path]) -> list[dict[str, Any]]:
    """One entry per peer SAE (its figure, folders and rows), or ``[]`` without peers."""
    tj = run / "analysis" / "transitions.json"
    peers = read_json(tj).get("peers") if tj.is_file() else None
    if not isinstance(peers, dict):
        return []
    by_stem = {p.stem: p for p in figs if p.suffix == ".html"}
    out = []
    for peer_id, entry in sorted(peers.items()):
        folders = entry.get("folders") or {}
        fig = by_stem.get(f"peer_{plotting.safe_name(peer_id)}")
        rows = [{
            "step": r["checkpoint"], "sae_id": r["sae_id"],
            "browser": "browser/" + browser_name(int(r["checkpoint"]), r["sae_id"]),
            "peer_folder": Path(folders[str(r["checkpoint"])]).resolve().as_uri()
            if str(r["checkpoint"]) in folders else None,
            "found": f"{r['found']} / {r['peer_features']} ({100 * r['found_fraction']:.0f} %)",
            "cosine": _num(r.get("median_cosine_found")),
            "nearest": _num(r.get("median_nearest_cosine")),
        } for r in entry.get("per_checkpoint") or []]
        out.append({"id": peer_id, "threshold": entry.get("threshold"), "rows": rows,
                    "notes": entry.get("notes") or [],
                    "figure": f"figures/{fig.name}" if fig is not None else None})
    return out
