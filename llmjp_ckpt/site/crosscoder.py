"""The crosscoder's latent labels per checkpoint, for the index (``crosscoder_labels.html``).

Read from ``RUN/analysis/crosscoder.json``'s ``labels`` part (:mod:`llmjp_ckpt.crosscoders.labels`);
absent when the crosscoder was trained without labels, and then the table is left out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmjp_ckpt.config import read_json
from llmjp_ckpt.site.planted import FILE as PLANTED_FILE
from llmjp_ckpt.site.planted import birth_matches, pct, pr_cell

TABLE = "crosscoder_features.parquet"  # llmjp_ckpt.crosscoders.labels.TABLE (not imported: no torch here)


def labels_context(cc_json: Path) -> dict[str, Any] | None:
    """Columns and rows of the per-checkpoint label-share table, or ``None`` without labels."""
    if not cc_json.is_file():
        return None
    labels = read_json(cc_json).get("labels")
    if not isinstance(labels, dict) or not labels.get("per_checkpoint"):
        return None
    rows = labels["per_checkpoint"]
    share_cols = sorted({k for r in rows for k in r if "=" in k})
    return {"columns": share_cols, "planted": _planted(labels.get("planted"), cc_json.parent),
            "n_labelled": labels.get("n_labelled"),
            "n_windows": labels.get("n_windows"), "n_top": labels.get("n_top"),
            "rows": [{"checkpoint": r["checkpoint"], "present": r["present"], "labelled": r["labelled"],
                      "shares": [pct(r.get(c, 0.0) if r["labelled"] else None) for c in share_cols]}
                     for r in rows]}


def _planted(view: dict[str, Any] | None, analysis: Path) -> dict[str, Any] | None:
    """The crosscoder's planted-concept rows, and its births beside the lineages' (toy runs)."""
    if not isinstance(view, dict) or not view.get("checkpoints"):
        return None
    rows = []
    for step in sorted(view["checkpoints"], key=int):
        c = view["checkpoints"][step]
        vs = c.get("vs_timeline") or {}
        rows.append({"step": step, "present": c.get("present_latents"), "planted": c.get("planted", 0),
                     "bilingual": c.get("bilingual", 0), "mix_pr": pr_cell(c.get("mix_paper")),
                     "concept_pr": pr_cell(c.get("concept_level")),
                     "concepts": f"{vs.get('both', 0)} of {vs.get('timeline_bilingual', 0)}" if vs else "–"})
    b = view.get("births") or {}
    births = [{"who": "crosscoder (first checkpoint present)", "matches": b.get("present_from_matches_timeline"),
               "of": b.get("with_timeline_step"), "share": pct(b.get("match_fraction"))}]
    rec = analysis / PLANTED_FILE
    if rec.is_file():  # the lineage view of the same question (llmjp_ckpt.toy.recovery)
        for sae_id, entry in sorted((read_json(rec).get("saes") or {}).items()):
            lb = entry.get("lineage_births") or {}
            if lb:
                births.append({"who": f"lineages of {sae_id} (first checkpoint a translation feature)",
                               "matches": birth_matches(lb),
                               "of": lb.get("with_timeline_step"), "share": pct(lb.get("match_fraction"))})
    return {"rows": rows, "births": births}
