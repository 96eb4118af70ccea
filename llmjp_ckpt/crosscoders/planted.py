"""The crosscoder's view of the toy's planted concepts over training, beside the lineage view.

On a toy run (``RUN/toy/concepts.json``) every labelled crosscoder latent gets its planted kind
from its top examples' max-activating tokens, exactly as the independent SAEs' features do in
:mod:`llmjp_ckpt.toy.recovery` (:func:`~llmjp_ckpt.toy.recovery.planted_kind`,
:func:`~llmjp_ckpt.toy.recovery.store_top_ids`). Per checkpoint the latents *present* there
(decoder norm ≥ ``present`` of its largest) are scored with the same
:func:`~llmjp_ckpt.toy.recovery.score_rows` (mix and concept-level precision / recall, the
translation concepts against the timeline's bilingual ones). Where the lineage view asks from
which checkpoint a lineage's members are translation features of a concept, the crosscoder's
answer is the first checkpoint where its translation latent is present; both are set against
the timeline's ``bilingual_step``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from llmjp_ckpt.config import read_json

LABELS = ("language_paper", "language_script", "granularity")


def latent_kinds(store: Any, features: list[int], forms: Mapping[int, Any]) -> dict[int, dict[str, Any]]:
    """Planted kind of each of ``features`` (those that are planted at all)."""
    from llmjp_ckpt.toy.recovery import planted_kind, store_top_ids

    out = {}
    for f in features:
        p = planted_kind(store_top_ids(store, int(f)), forms)
        if p is not None:
            out[int(f)] = p
    return out


def planted_view(df: Any, kinds: Mapping[int, dict[str, Any]], steps: list[int],
                 timeline: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Per checkpoint the scores of the present planted latents, and the translation latents'
    first present checkpoint against the timeline's ``bilingual_step``."""
    from llmjp_ckpt.toy.recovery import score_rows, shares

    timeline = timeline or {}
    by_step = {int(r["step"]): r for r in timeline.get("checkpoints", [])}
    bilingual_step = timeline.get("bilingual_step", {}) or {}
    checkpoints = {}
    for step in steps:
        here = df[(df["checkpoint"] == step) & df["present"]].set_index("feature")
        rows = [{**kinds[f], "feature": f, **here.loc[f, list(LABELS)].to_dict()}
                for f in here.index.tolist() if f in kinds]
        tl = by_step.get(step)
        checkpoints[str(step)] = {**score_rows(rows, tl["bilingual"] if tl else None),
                                  "shares": shares(here), "present_latents": len(here)}
    births = []
    for f, p in sorted(kinds.items()):
        if p["kind"] != "translation":
            continue
        pres = df[(df["feature"] == f) & df["present"]]["checkpoint"]
        concept = p["concepts"][0]
        births.append({"latent": f, "concept": concept,
                       "present_from": int(pres.min()) if len(pres) else None,
                       "timeline_step": bilingual_step.get(concept)})
    timed = [b for b in births if b["timeline_step"] is not None]
    agree = sum(b["present_from"] == b["timeline_step"] for b in timed)
    return {"checkpoints": checkpoints,
            "births": {"latents": births, "with_timeline_step": len(timed),
                       "present_from_matches_timeline": agree,
                       "match_fraction": round(agree / len(timed), 4) if timed else None}}


def toy_view(run: Path, store: Any, df: Any, steps: list[int], toy_dir: Path | None = None) -> dict[str, Any] | None:
    """:func:`planted_view` on a toy run; ``None`` when ``RUN/toy/concepts.json`` is absent."""
    from llmjp_ckpt.toy.recovery import token_forms
    from llmjp_ckpt.toy.timeline import FILE as TIMELINE

    toy = toy_dir or run / "toy"
    if not (toy / "concepts.json").is_file():
        return None
    timeline = read_json(toy / TIMELINE) if (toy / TIMELINE).is_file() else None
    first = df[df["checkpoint"] == steps[0]]
    live = first[first["language_paper"].notna()]["feature"].astype(int).tolist()
    kinds = latent_kinds(store, live, token_forms(toy / "concepts.json"))
    return planted_view(df, kinds, steps, timeline)
