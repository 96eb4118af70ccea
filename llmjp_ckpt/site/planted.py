"""The toy's planted timeline beside the recovered shares, for the index (``planted.html``).

Read from ``RUN/analysis/planted_recovery.json`` (:mod:`llmjp_ckpt.toy.recovery`); absent on
runs that are not the toy world, and then the section is left out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmjp_ckpt.config import read_json

FILE = "planted_recovery.json"  # llmjp_ckpt.toy.recovery.FILE (the site does not import the toy)
FIGURE = "planted_vs_recovered"


def pct(x: Any) -> str:
    """A share as a whole percentage, ``–`` when missing."""
    return "–" if x is None else f"{100 * float(x):.0f} %"


def pr_cell(score: dict[str, Any] | None) -> str:
    """``precision / recall (tp/actual)`` of a :func:`llmjp_ckpt.toy.recovery` score, ``–`` when missing."""
    if not score:
        return "–"
    counts = f"{score.get('tp', 0)}/{score.get('actual', 0)}"
    return f"{pct(score.get('precision'))} / {pct(score.get('recall'))} ({counts})"


def birth_matches(births: dict[str, Any]) -> int | None:
    """Lineages whose birth is the timeline's step (files written before the variant births named
    the count ``bilingual_from_matches_timeline``)."""
    return births.get("from_matches_timeline", births.get("bilingual_from_matches_timeline"))


def planted_context(run: Path, figs: list[Path]) -> dict[str, Any] | None:
    """Rows of the planted-vs-recovered table, or ``None`` without ``planted_recovery.json``."""
    path = run / "analysis" / FILE
    if not path.is_file():
        return None
    res = read_json(path)
    timeline = {str(r["step"]): r for r in res.get("timeline") or []}
    rows = []
    for sae_id, entry in sorted((res.get("saes") or {}).items()):
        for step in sorted(entry.get("checkpoints", {}), key=int):
            c = entry["checkpoints"][step]
            tl = timeline.get(step, {})
            vs = c.get("vs_timeline") or {}
            vv = c.get("variants_vs_timeline") or {}
            rows.append({
                "sae_id": sae_id, "step": step,
                "planted_bilingual": pct(tl.get("bilingual_share")),
                "translation_acc": pct(tl.get("translation_acc")),
                "grouped": pct(tl.get("grouped_share")),
                "mix": pct(c["shares"].get("mix_paper")),
                "concept_level": pct(c["shares"].get("concept_level")),
                "merged": pct(tl.get("merged_share")),
                "synonym": pct(c["shares"].get("synonym")), "semantic": pct(c["shares"].get("semantic")),
                "variants": f"{vv.get('both', 0)} of {vv.get('timeline', 0)}" if vv else "–",
                "n_planted": c.get("planted", 0), "n_bilingual": c.get("bilingual", 0),
                "mix_pr": pr_cell(c.get("mix_paper")), "concept_pr": pr_cell(c.get("concept_level")),
                "concepts": f"{vs.get('both', 0)} of {vs.get('timeline_bilingual', 0)}" if vs else "–",
            })
    births = []
    for sae_id, entry in sorted((res.get("saes") or {}).items()):
        for key, what in (("lineage_births", "translation"), ("variant_births", "variant")):
            b = entry.get(key) or {}
            if b:
                births.append({"sae_id": sae_id, "kind": what, "of": b.get("with_timeline_step", 0),
                               "matches": birth_matches(b),
                               "share": pct(b.get("match_fraction"))})
    names = {p.stem: p.name for p in figs if p.suffix == ".html"}
    return {"rows": rows, "births": births, "figure": f"figures/{names[FIGURE]}" if FIGURE in names else None,
            "min_share": res.get("min_share"), "json": "data/" + FILE}
