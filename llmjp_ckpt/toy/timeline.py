"""The planted truth over training: what each toy checkpoint represents, from the toy's own model.

For every checkpoint (nothing from the SAEs), at the layer the SAEs read:

* each planted **concept** is *bilingual* when its Japanese and English forms share a direction:
  the cosine of the concept's ja and en residuals (mean residual at the form's last token over
  monolingual sentences, centred on the mean of all forms, as in :mod:`llmjp_ckpt.toy.signals`)
  exceeds the mean cosine of its forms to unrelated concepts' forms of the other language by
  :data:`BILINGUAL_MARGIN`, *and* each form's translation is among its :data:`RETRIEVAL_TOP`
  nearest forms of the other language, both ways (mutual nearest neighbours, as in bilingual
  lexicon induction). The noise floor: the demo toy's random model (step 10) has 1 of 46. Otherwise it is
  *monolingual*. The concept's translation accuracy (parallel prompts that end before its
  translation) is recorded beside it.
* each concept with an orthographic **variant** (猫 / ネコ) has it *merged* when the variant's
  residual and the main form's are mutual :data:`RETRIEVAL_TOP` nearest neighbours among the
  concepts' main Japanese forms and variants, and their cosine exceeds the variant's mean cosine
  to the other main forms by :data:`BILINGUAL_MARGIN` (the bilingual rule, inside one language):
  the synonym level of concept knowledge, one meaning under two spellings.
* each **category** is *grouped* when its concepts' residuals are closer to each other than to
  other categories' by at least :data:`CATEGORY_MARGIN` (same language, averaged over ja and en).

``planted_timeline.json`` (:func:`write_timeline`) holds, per checkpoint, the per-concept and
per-category numbers and decisions and their summaries, and per concept the first checkpoint
from which it stays bilingual (``bilingual_step``). Same toy folder and seed: the same file.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from llmjp_ckpt import atomic
from llmjp_ckpt.config import read_json
from llmjp_ckpt.errors import UserError
from llmjp_ckpt.runfolder import step_dir
from llmjp_ckpt.toy.lexicon import CATEGORIES, CONCEPTS
from llmjp_ckpt.toy.train import deterministic

FILE = "planted_timeline.json"
RETRIEVAL_TOP = 3  # each form's translation among its 3 nearest forms of the other language (both ways)
BILINGUAL_MARGIN = 0.1  # and the concept's ja-en cosine this far above its unrelated pairs' mean
CATEGORY_MARGIN = 0.1  # within-category cos - between-category cos for a category to count as grouped
PROBE_SEED = 2_000_003  # the probes' seed offset, the same stream as the learning signals' forms


def _cos(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cosine matrix of the rows of ``x`` against the rows of ``y``."""
    return torch.nn.functional.normalize(x, dim=-1) @ torch.nn.functional.normalize(y, dim=-1).T


def form_vectors(model, sp, layer: int, forms: list) -> dict[tuple[str, str, str], torch.Tensor]:
    """``(concept, language, form) ->`` the form's mean residual, centred on the mean of all forms."""
    from llmjp_ckpt.toy.signals import _run

    _, resid = _run(model, [f[3] for f in forms], layer)
    sums: dict[tuple, torch.Tensor] = {}
    counts: dict[tuple, int] = {}
    for (c, lang, form, _), r in zip(forms, resid):
        sums[c, lang, form] = sums.get((c, lang, form), 0) + r
        counts[c, lang, form] = counts.get((c, lang, form), 0) + 1
    vecs = {k: sums[k] / counts[k] for k in sums}
    centre = torch.stack(list(vecs.values())).mean(0)
    return {k: v - centre for k, v in vecs.items()}


def main_vectors(vecs: dict[tuple[str, str, str], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ja, en)`` of :func:`form_vectors`: each concept's main Japanese form and English form."""
    ja = torch.stack([vecs[c.id, "ja", c.ja[0]] for c in CONCEPTS])
    en = torch.stack([vecs[c.id, "en", c.en] for c in CONCEPTS])
    return ja, en


def concept_vectors(model, sp, layer: int, forms: list) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ja, en)``: one centred residual per concept (main Japanese form, English form)."""
    return main_vectors(form_vectors(model, sp, layer, forms))


def variant_vectors(vecs: dict[tuple[str, str, str], torch.Tensor]) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """``(ids, main, variant)``: the main Japanese form and first variant of every concept that has one."""
    have = [c for c in CONCEPTS if len(c.ja) > 1]
    main = torch.stack([vecs[c.id, "ja", c.ja[0]] for c in have])
    variant = torch.stack([vecs[c.id, "ja", c.ja[1]] for c in have])
    return [c.id for c in have], main, variant


def _mutual_rank(cross: torch.Tensor) -> torch.Tensor:
    """Per pair ``i`` of ``cross[i, j]``: how many partners beat ``j = i``, the worse of both ways."""
    same = cross.diagonal()
    return torch.maximum((cross > same[:, None]).sum(1), (cross > same[None, :]).sum(0))


def decide_variants(ids: list[str], main: torch.Tensor, variant: torch.Tensor) -> dict[str, dict[str, Any]]:
    """Per concept with a variant: is it merged with its main form (see the module)?"""
    cross = _cos(variant, main)  # [variant, main form]
    n = len(ids)
    same = cross.diagonal()
    unrelated = (cross.sum(1) - same) / max(1, n - 1)
    rank = _mutual_rank(cross)
    merged = (rank < RETRIEVAL_TOP) & (same - unrelated >= BILINGUAL_MARGIN)
    return {cid: {"cos_same": round(float(same[i]), 4), "margin": round(float(same[i] - unrelated[i]), 4),
                  "retrieval_rank": int(rank[i]), "merged": bool(merged[i])} for i, cid in enumerate(ids)}


def per_concept_translation(preds: torch.Tensor, probes: list) -> dict[str, float | None]:
    """Accuracy of the parallel-pair probes per target concept (``None``: no probe)."""
    hits: dict[str, list[float]] = {}
    for p, y in zip(probes, preds.tolist()):
        if p.kind == "parallel" and p.concept:
            hits.setdefault(p.concept, []).append(float(y == p.target))
    return {c.id: round(sum(hits[c.id]) / len(hits[c.id]), 4) if c.id in hits else None for c in CONCEPTS}


def decide(ja: torch.Tensor, en: torch.Tensor) -> dict[str, Any]:
    """The concept and category decisions of one checkpoint from its concept vectors."""
    n = len(CONCEPTS)
    cross = _cos(ja, en)  # [ja concept, en concept]
    off = ~torch.eye(n, dtype=torch.bool)
    same = cross.diagonal()
    # each concept's unrelated pairs: its ja form to other en forms, its en form to other ja forms
    unrel = torch.cat([cross[off].view(n, n - 1), cross.T[off].view(n, n - 1)], dim=1)
    unrelated = unrel.mean(1)
    margin = same - unrelated
    rank = _mutual_rank(cross)  # forms of the other language closer than the translation, both ways
    bilingual = (rank < RETRIEVAL_TOP) & (margin >= BILINGUAL_MARGIN)
    concepts = {
        c.id: {"category": c.category, "cos_same": round(float(same[i]), 4),
               "cos_unrelated": round(float(unrelated[i]), 4), "margin": round(float(margin[i]), 4),
               "retrieval_rank": int(rank[i]), "bilingual": bool(bilingual[i])}
        for i, c in enumerate(CONCEPTS)}
    cat_of = [c.category for c in CONCEPTS]
    categories = {}
    for cat in CATEGORIES:
        idx = [i for i, k in enumerate(cat_of) if k == cat]
        rest = [i for i, k in enumerate(cat_of) if k != cat]
        within, between = [], []
        for vec in (ja, en):
            sims = _cos(vec, vec)
            within += [float(sims[i, j]) for i, j in itertools.combinations(idx, 2)]
            between += [float(sims[i, j]) for i in idx for j in rest]
        gap = sum(within) / len(within) - sum(between) / len(between)
        categories[cat] = {"within": round(sum(within) / len(within), 4),
                           "between": round(sum(between) / len(between), 4),
                           "gap": round(gap, 4), "grouped": gap >= CATEGORY_MARGIN}
    return {"concepts": concepts, "categories": categories}


def planted_timeline(toy_dir: str | Path, per_form: int | None = None,
                     n_translation: int | None = None) -> dict[str, Any]:
    """The timeline of the toy world in ``toy_dir`` (its ``toy.json``, checkpoints, tokenizer)."""
    from transformers import LlamaForCausalLM

    from llmjp_ckpt.toy.signals import _run, form_probes, translation_probes
    from llmjp_ckpt.toy.tokenizer import toy_encoder

    toy = Path(toy_dir)
    if not (toy / "toy.json").is_file():
        raise UserError(f"{toy / 'toy.json'}: missing (run `llmjp-ckpt toy` first)")
    info = read_json(toy / "toy.json")
    cfg = info.get("config") or {}
    seed, layer = int(info["seed"]), int(info["layer"])
    per_form = per_form or int(cfg.get("per_form", 6))
    n_translation = n_translation or int(cfg.get("n_translation", 300))
    sp = toy_encoder(toy / "tokenizer")
    forms = form_probes(sp, seed + PROBE_SEED, per_form)
    probes = translation_probes(sp, seed + 1_000_003, n_translation)  # the learning signals' probes
    rows = []
    with deterministic(), torch.no_grad():
        for step in tqdm(info["steps"], desc="toy: planted timeline", unit="ckpt"):
            path = toy / "checkpoints" / step_dir(int(step))
            model = LlamaForCausalLM.from_pretrained(str(path), dtype=torch.float32).eval()
            vecs = form_vectors(model, sp, layer, forms)
            ja, en = main_vectors(vecs)
            preds, _ = _run(model, [p.ids for p in probes], layer)
            row = {"step": int(step), **decide(ja, en), "variants": decide_variants(*variant_vectors(vecs))}
            for cid, acc in per_concept_translation(preds, probes).items():
                row["concepts"][cid]["translation_acc"] = acc
            rows.append(row)
    return summarise(rows, seed, layer)


def summarise(rows: list[dict[str, Any]], seed: int, layer: int) -> dict[str, Any]:
    """Add per-checkpoint summaries and each concept's ``bilingual_step`` to the rows."""
    for row in rows:
        cs = row["concepts"]
        bi = [c for c, v in cs.items() if v["bilingual"]]
        accs = [v["translation_acc"] for v in cs.values() if v.get("translation_acc") is not None]
        row["bilingual"] = bi
        row["monolingual"] = [c for c, v in cs.items() if not v["bilingual"]]
        row["bilingual_share"] = round(len(bi) / len(cs), 4)
        row["categories_grouped"] = [k for k, v in row["categories"].items() if v["grouped"]]
        row["grouped_share"] = round(len(row["categories_grouped"]) / len(row["categories"]), 4)
        row["mean_margin"] = round(sum(v["margin"] for v in cs.values()) / len(cs), 4)
        var = row.get("variants") or {}
        row["variants_merged"] = [c for c, v in var.items() if v["merged"]]
        row["merged_share"] = round(len(row["variants_merged"]) / len(var), 4) if var else None
        row["translation_acc"] = round(sum(accs) / len(accs), 4) if accs else None
    birth = {c.id: _stays_from(rows, "concepts", c.id, "bilingual") for c in CONCEPTS}
    variants = (rows[0].get("variants") or {}) if rows else {}
    merged = {cid: _stays_from(rows, "variants", cid, "merged") for cid in variants}
    return {
        "seed": seed, "layer": layer, "retrieval_top": RETRIEVAL_TOP,
        "bilingual_margin": BILINGUAL_MARGIN, "category_margin": CATEGORY_MARGIN,
        "steps": [r["step"] for r in rows], "checkpoints": rows, "bilingual_step": birth,
        "variant_step": merged,
    }


def _stays_from(rows: list[dict[str, Any]], table: str, key: str, flag: str) -> int | None:
    """The first step from which ``row[table][key][flag]`` holds at every later checkpoint."""
    step = None
    for row in reversed(rows):
        if not row[table][key][flag]:
            break
        step = row["step"]
    return step


def write_timeline(toy_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write ``planted_timeline.json`` (beside the checkpoints unless ``out``); return its path."""
    path = Path(out) if out else Path(toy_dir) / FILE
    atomic.write_json(path, planted_timeline(toy_dir))
    return path
