"""Score the features' language labels against the toy world's planted truth.

A feature is *planted* when the max-activating token of at least ``min_share`` (0.9, the share
at which both rules call a feature monolingual) of its top examples is a piece of a planted form
(``concepts.json``) of one language only, and all those pieces are of the same language. Its
planted language is then compared with the language each rule (``paper``, ``script``) gave it
in ``analysis/features.parquet``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import torch

from llmjp_ckpt.chars import LANGUAGE_THRESHOLD, char_script, strip_byte_pieces
from llmjp_ckpt.config import read_json
from llmjp_ckpt.errors import UserError
from llmjp_ckpt.features.store import FeatureStore
from llmjp_ckpt.runfolder import parse_step_dir


def piece_languages(concepts_json: Path) -> dict[int, str]:
    """Token id -> language, for the pieces of planted forms that belong to one language only.

    A piece with no letter of either script (SentencePiece's bare ``▁``, a lone byte piece) is no
    evidence of a form: a feature firing on spaces is not a planted feature of either language.
    """
    langs: dict[int, set[str]] = {}
    for form in read_json(concepts_json)["forms"]:
        pieces = form["pieces"] + form["pieces_attached"]
        for i, piece in zip(form["ids"] + form["ids_attached"], pieces, strict=True):
            if any(char_script(c) != "neutral" for c in strip_byte_pieces(piece)):
                langs.setdefault(int(i), set()).add(form["language"])
    return {i: next(iter(s)) for i, s in langs.items() if len(s) == 1}


def planted_language(store: FeatureStore, feature: int, lang_of: dict[int, str], min_share: float) -> str | None:
    """The planted language of one feature, or None when its top examples are not planted forms."""
    wins = store.t["top_windows"][feature]
    keep = (wins >= 0).nonzero().squeeze(1)
    if len(keep) == 0:
        return None
    rows = torch.searchsorted(store.t["window_ids"], wins[keep])
    ids = store.t["window_tokens"][rows, int(store.meta["first_position"]):]
    acts = store.t["top_token_acts"][feature][keep].float()
    top_ids = ids.gather(1, acts.argmax(1, keepdim=True)).squeeze(1).tolist()
    langs = Counter(lang_of.get(i) for i in top_ids)
    planted = {k: v for k, v in langs.items() if k is not None}
    if len(planted) != 1:
        return None
    (lang, n), = planted.items()
    return lang if n >= min_share * len(top_ids) else None


def scored_inputs(run_dir: str | Path, toy_dir: str | Path | None) -> tuple[Path, Path, Path, Path]:
    """``(run, toy, concepts.json, features.parquet)`` for scoring a toy run; a :class:`UserError`
    naming the first that is missing."""
    run = Path(run_dir)
    toy = Path(toy_dir) if toy_dir else run / "toy"
    concepts, parquet = toy / "concepts.json", run / "analysis" / "features.parquet"
    for p in (concepts, parquet):
        if not p.is_file():
            raise UserError(f"{p}: missing (run the toy and the features stage first)")
    return run, toy, concepts, parquet


def planted_agreement(
    run_dir: str | Path, toy_dir: str | Path | None = None, min_share: float = LANGUAGE_THRESHOLD
) -> dict[str, Any]:
    """How often each language rule gives planted features their planted language."""
    import pandas as pd

    run, _, concepts, parquet = scored_inputs(run_dir, toy_dir)
    lang_of = piece_languages(concepts)
    labels = pd.read_parquet(parquet).set_index(["checkpoint", "sae_id", "feature"])
    rows = []
    for folder in sorted((run / "features").glob("iter_*/*")):
        step, sae_id = parse_step_dir(folder.parent.name), folder.name
        if step is None:
            continue
        store = FeatureStore.load(folder)
        for f in range(store.d_sae):
            lang = planted_language(store, f, lang_of, min_share)
            if lang is not None and (step, sae_id, f) in labels.index:
                row = labels.loc[(step, sae_id, f)]
                rows.append(
                    {
                        "step": step,
                        "planted": lang,
                        "paper": row["language_paper"],
                        "script": row["language_script"],
                    }
                )
    n = len(rows)
    out: dict[str, Any] = {
        "features_covered": n,
        "alive_features": int((labels["frequency"] > 0).sum()),
        "min_share": min_share,
    }
    for rule in ("paper", "script"):
        out[f"agree_{rule}"] = sum(r[rule] == r["planted"] for r in rows) / n if n else None
    out["by_language"] = {lang: sum(r["planted"] == lang for r in rows) for lang in ("ja", "en")}
    out["disagreements"] = [r for r in rows if r["script"] != r["planted"]][:20]
    return out
