"""Score what the SAEs recovered against the toy's planted truth over training.

Every live feature of every SAE is given a *planted kind* from the max-activating tokens of its
top examples (:func:`planted_kind`), tokens mapped to planted forms by ``concepts.json``:

* ``token``: at least ``min_share`` of the examples are **one form** of one concept;
* ``variant``: one concept, one language, several forms (猫 / ネコ);
* ``translation``: one concept, both languages (each at least ``min_side`` of the examples);
* ``category``: several concepts of **one category** (each of at least two at ``min_side``);
* ``None``: not a planted feature (function words, mixed categories, neutral pieces).

A planted feature is *bilingual* when both languages hold at least ``min_side`` of its examples
(a ``translation`` feature, or a ``category`` one spanning ja and en), and *concept-level*
unless it is ``token``. Per checkpoint and SAE (:func:`score_rows`): precision and recall of the
``mix`` label (both rules) for bilingual planted features, and of concept-level granularity
(``synonym`` / ``semantic``) for concept-level ones; the concepts with a recovered translation
feature against the concepts the timeline (:mod:`llmjp_ckpt.toy.timeline`) calls bilingual,
and those with a recovered ``variant`` feature against the variants it calls merged (the
synonym level); the ``synonym`` and ``semantic`` shares beside the concept-level one; and,
from ``analysis/lineages/``, each translation (variant) feature's birth against the timeline's
``bilingual_step`` (``variant_step``). Written to ``RUN/analysis/planted_recovery.json`` with a figure.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from llmjp_ckpt.chars import LANGUAGE_THRESHOLD, char_script, strip_byte_pieces
from llmjp_ckpt.config import read_json
from llmjp_ckpt.errors import UserError

FILE = "planted_recovery.json"
MIN_SIDE = 0.1  # each language (or each of two concepts) must hold this share of the examples
CONCEPT_LEVEL = ("synonym", "semantic")  # the granularity labels that mean concept-level
KINDS = ("token", "variant", "translation", "category")
MIX_RULES = ("paper", "script")


# --- the planted kind of one feature ----------------------------------------------------------
def token_forms(concepts_json: str | Path) -> dict[int, set[tuple[str, str, str, str]]]:
    """Token id -> the ``(concept, category, language, form)`` of the planted forms it is a piece of.

    Pieces with no letter of either script (a bare ``▁``, a lone byte piece) are left out.
    """
    out: dict[int, set[tuple[str, str, str, str]]] = {}
    for f in read_json(concepts_json)["forms"]:
        for i, piece in zip(f["ids"] + f["ids_attached"], f["pieces"] + f["pieces_attached"], strict=True):
            if any(char_script(c) != "neutral" for c in strip_byte_pieces(piece)):
                out.setdefault(int(i), set()).add((f["concept"], f["category"], f["language"], f["form"]))
    return out


def _one(values: Iterable[str]) -> str | None:
    s = set(values)
    return next(iter(s)) if len(s) == 1 else None


def planted_kind(top_ids: list[int], forms: Mapping[int, set[tuple[str, str, str, str]]],
                 min_share: float = LANGUAGE_THRESHOLD, min_side: float = MIN_SIDE) -> dict[str, Any] | None:
    """The planted kind of a feature whose examples' max-activating tokens are ``top_ids``.

    Returns ``{"kind", "concepts", "category", "bilingual", "concept_level", "languages"}`` or
    ``None`` when the feature is not a planted one. A token shared by two concepts counts for
    their category only; one shared by two forms of a concept counts for the concept only.
    """
    n = len(top_ids)
    if n == 0:
        return None
    rows = [forms.get(i, set()) for i in top_ids]
    concept = [_one(r[0] for r in fs) for fs in rows]
    category = [_one(r[1] for r in fs) for fs in rows]
    lang = [_one(r[2] for r in fs) for fs in rows]
    form = [_one(r[3] for r in fs) for fs in rows]
    cats = Counter(c for c in category if c)
    if not cats:
        return None
    cat, n_cat = cats.most_common(1)[0]
    if n_cat < min_share * n:
        return None
    in_cat = [i for i in range(n) if category[i] == cat]
    langs = Counter(lang[i] for i in in_cat if lang[i])
    languages = sorted(k for k, v in langs.items() if v >= min_side * n)
    bilingual = len(languages) == 2
    cons = Counter(concept[i] for i in in_cat if concept[i])
    top_c, n_c = cons.most_common(1)[0] if cons else (None, 0)
    if top_c is not None and n_c >= min_share * n:
        mine = [i for i in in_cat if concept[i] == top_c]
        n_forms = sum(v >= min_side * n for v in Counter(form[i] for i in mine if form[i]).values())
        kind = "translation" if bilingual else "variant" if n_forms >= 2 else "token"
        concepts = [top_c]
    elif sum(v >= min_side * n for v in cons.values()) >= 2:
        kind = "category"
        concepts = sorted(c for c, v in cons.items() if v >= min_side * n)
    else:
        return None
    return {"kind": kind, "concepts": concepts, "category": cat, "bilingual": bilingual,
            "concept_level": kind != "token", "languages": languages}


def store_top_ids(store, feature: int) -> list[int]:
    """The max-activating token id of each top example of ``feature`` in a top-N store."""
    import torch

    wins = store.t["top_windows"][feature]
    keep = (wins >= 0).nonzero().squeeze(1)
    if len(keep) == 0:
        return []
    rows = torch.searchsorted(store.t["window_ids"], wins[keep])
    ids = store.t["window_tokens"][rows, int(store.meta["first_position"]):]
    acts = store.t["top_token_acts"][feature][keep].float()
    return ids.gather(1, acts.argmax(1, keepdim=True)).squeeze(1).tolist()


# --- scores -------------------------------------------------------------------------------------
def _pr(truth: list[bool], pred: list[bool]) -> dict[str, Any]:
    tp = sum(t and p for t, p in zip(truth, pred))
    n_pred, n_true = sum(pred), sum(truth)
    return {"tp": tp, "predicted": n_pred, "actual": n_true,
            "precision": round(tp / n_pred, 4) if n_pred else None,
            "recall": round(tp / n_true, 4) if n_true else None}


def _vs(found: list[str], planted: Iterable[str]) -> dict[str, Any]:
    """Concepts recovered (``found``) against the concepts the timeline says (``planted``)."""
    planted = set(planted)
    hit = planted & set(found)
    return {"timeline": len(planted), "recovered": len(found), "both": len(hit),
            "precision": round(len(hit) / len(found), 4) if found else None,
            "recall": round(len(hit) / len(planted), 4) if planted else None}


def score_rows(rows: list[dict[str, Any]], timeline_bilingual: Iterable[str] | None = None,
               timeline_merged: Iterable[str] | None = None) -> dict[str, Any]:
    """Scores of one (checkpoint, SAE) from its planted rows.

    A row: ``kind`` … from :func:`planted_kind` plus the feature's ``language_paper``,
    ``language_script`` and ``granularity`` labels. ``timeline_bilingual`` / ``timeline_merged``:
    the concepts the timeline calls bilingual / whose variant it calls merged at the checkpoint.
    """
    out: dict[str, Any] = {"planted": len(rows), "by_kind": {k: sum(r["kind"] == k for r in rows) for k in KINDS},
                           "bilingual": sum(r["bilingual"] for r in rows)}
    truth = [bool(r["bilingual"]) for r in rows]
    for rule in MIX_RULES:
        out[f"mix_{rule}"] = _pr(truth, [r.get(f"language_{rule}") == "mix" for r in rows])
    out["concept_level"] = _pr([bool(r["concept_level"]) for r in rows],
                               [r.get("granularity") in CONCEPT_LEVEL for r in rows])
    found = sorted({c for r in rows if r["kind"] == "translation" for c in r["concepts"]})
    out["translation_concepts"] = found
    variants = sorted({c for r in rows if r["kind"] == "variant" for c in r["concepts"]})
    out["variant_concepts"] = variants
    out["synonym"] = _pr([r["kind"] in ("variant", "translation") for r in rows],
                         [r.get("granularity") == "synonym" for r in rows])
    if timeline_bilingual is not None:
        vs = _vs(found, timeline_bilingual)
        out["vs_timeline"] = {"timeline_bilingual": vs.pop("timeline"), **vs}
    if timeline_merged is not None:
        out["variants_vs_timeline"] = _vs(variants, timeline_merged)
    return out


def shares(df) -> dict[str, float | None]:
    """``mix`` shares (both rules), the concept-level share and its ``synonym`` / ``semantic`` parts,
    of the labelled rows of ``df``."""
    lab = df[df["language_paper"].notna()]
    n = len(lab)
    parts = {g: round(float((lab["granularity"] == g).mean()), 4) if n else None for g in CONCEPT_LEVEL}
    return {"n": n, **parts,
            "mix_paper": round(float((lab["language_paper"] == "mix").mean()), 4) if n else None,
            "mix_script": round(float((lab["language_script"] == "mix").mean()), 4) if n else None,
            "concept_level": round(float(lab["granularity"].isin(CONCEPT_LEVEL).mean()), 4) if n else None}


def lineage_births(run: Path, sae_id: str, planted: dict[tuple[int, int], dict[str, Any]],
                   timeline_step: Mapping[str, int | None], kind: str = "translation") -> dict[str, Any] | None:
    """Each lineage that holds a ``kind`` feature (``translation`` or ``variant``): its concept, the
    checkpoint from which its members are such features of that concept (``kind_from``), and the
    timeline's step for the concept (``bilingual_step`` or ``variant_step``)."""
    df = _lineage_frame(run, sae_id)
    return None if df is None else _births(df, planted, timeline_step, kind)


def _lineage_frame(run: Path, sae_id: str):
    """``analysis/lineages/<sae_id>.parquet`` sorted by chain and checkpoint, or ``None``."""
    import pandas as pd

    path = run / "analysis" / "lineages" / f"{sae_id}.parquet"
    return pd.read_parquet(path).sort_values(["chain", "checkpoint"]) if path.is_file() else None


def _births(df, planted: dict[tuple[int, int], dict[str, Any]], timeline_step: Mapping[str, int | None],
            kind: str) -> dict[str, Any]:
    """:func:`lineage_births` on a lineage frame already read."""
    out = []
    for chain, g in df.groupby("chain"):
        members = [(int(s), planted.get((int(s), int(f)))) for s, f in zip(g["checkpoint"], g["feature"])]
        hits = [(s, p["concepts"][0]) for s, p in members if p and p["kind"] == kind]
        if not hits:
            continue
        concept = Counter(c for _, c in hits).most_common(1)[0][0]
        out.append({"chain": int(chain), "concept": concept, "chain_birth": members[0][0],
                    "kind_from": min(s for s, c in hits if c == concept),
                    "timeline_step": timeline_step.get(concept)})
    timed = [r for r in out if r["timeline_step"] is not None]
    agree = sum(r["kind_from"] == r["timeline_step"] for r in timed)
    return {"kind": kind, "lineages": out, "with_timeline_step": len(timed),
            "from_matches_timeline": agree, "match_fraction": round(agree / len(timed), 4) if timed else None}


def planted_recovery(run_dir: str | Path, toy_dir: str | Path | None = None,
                     timeline: dict[str, Any] | None = None,
                     min_share: float = LANGUAGE_THRESHOLD) -> dict[str, Any]:
    """Score every SAE of ``run_dir`` against the toy's planted timeline (see the module)."""
    import pandas as pd

    from llmjp_ckpt.features.store import FeatureStore
    from llmjp_ckpt.runfolder import sae_folders, step_dir
    from llmjp_ckpt.saes.dead import alive_mask
    from llmjp_ckpt.toy.planted import scored_inputs
    from llmjp_ckpt.toy.timeline import FILE as TIMELINE

    run, toy, concepts, parquet = scored_inputs(run_dir, toy_dir)
    if timeline is None and (toy / TIMELINE).is_file():
        timeline = read_json(toy / TIMELINE)
    by_step = {r["step"]: r for r in (timeline or {}).get("checkpoints", [])}
    bilingual_step = (timeline or {}).get("bilingual_step", {})
    variant_step = (timeline or {}).get("variant_step", {})
    forms = token_forms(concepts)
    labels = pd.read_parquet(parquet)
    saes: dict[str, Any] = {}
    for step, sae_id, folder in sae_folders(run):
        store_dir = run / "features" / step_dir(step) / sae_id
        if not store_dir.is_dir():
            continue
        store = FeatureStore.load(store_dir)
        alive = alive_mask(folder)
        lab = labels[(labels["checkpoint"] == step) & (labels["sae_id"] == sae_id)].set_index("feature")
        lab = lab[lab.index.isin([int(f) for f in alive.nonzero()[0]])]
        rows, planted = [], {}
        for f in lab.index:
            p = planted_kind(store_top_ids(store, int(f)), forms, min_share)
            if p is None:
                continue
            planted[step, int(f)] = p
            rows.append({**p, "feature": int(f), **lab.loc[f, ["language_paper", "language_script",
                                                                 "granularity"]].to_dict()})
        tl = by_step.get(step)
        entry = saes.setdefault(sae_id, {"checkpoints": {}, "_planted": {}})
        entry["_planted"].update(planted)
        entry["checkpoints"][str(step)] = {
            **score_rows(rows, tl["bilingual"] if tl else None, tl.get("variants_merged") if tl else None),
            "shares": shares(lab),
            "bilingual_features": [{"feature": r["feature"], "concepts": r["concepts"], "kind": r["kind"],
                                    "language_paper": r["language_paper"], "granularity": r["granularity"]}
                                   for r in rows if r["bilingual"]][:50]}
    for sae_id, entry in saes.items():
        planted, df = entry.pop("_planted"), _lineage_frame(run, sae_id)  # one read for both kinds
        entry["lineage_births"] = None if df is None else _births(df, planted, bilingual_step, "translation")
        entry["variant_births"] = None if df is None else _births(df, planted, variant_step, "variant")
    summary = None
    if timeline:
        summary = [{"step": r["step"], "bilingual_share": r["bilingual_share"],
                    "grouped_share": r["grouped_share"], "merged_share": r.get("merged_share"),
                    "mean_margin": r["mean_margin"],
                    "translation_acc": r["translation_acc"]} for r in timeline["checkpoints"]]
    return {"min_share": min_share, "min_side": MIN_SIDE, "concept_level_labels": list(CONCEPT_LEVEL),
            "timeline": summary, "saes": saes}


def figure(result: dict[str, Any]):
    """Planted (timeline) vs recovered (per SAE) shares over checkpoints, one plotly figure."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=3, subplot_titles=("bilingual: planted vs mix share",
                                                        "semantic: grouped categories vs semantic share",
                                                        "synonym: merged variants vs synonym share"))
    tl = result.get("timeline") or []
    x = [str(r["step"]) for r in tl]
    if tl:
        fig.add_trace(go.Scatter(x=x, y=[r["bilingual_share"] for r in tl], name="planted: bilingual concepts",
                                 line={"dash": "dash", "color": "black"}), row=1, col=1)
        fig.add_trace(go.Scatter(x=x, y=[r["translation_acc"] for r in tl], name="planted: translation accuracy",
                                 line={"dash": "dot", "color": "grey"}), row=1, col=1)
        fig.add_trace(go.Scatter(x=x, y=[r["grouped_share"] for r in tl], name="planted: grouped categories",
                                 line={"dash": "dash", "color": "black"}, showlegend=False), row=1, col=2)
        fig.add_trace(go.Scatter(x=x, y=[r.get("merged_share") for r in tl], name="planted: merged variants",
                                 line={"dash": "dash", "color": "black"}, showlegend=False), row=1, col=3)
    for sae_id, entry in sorted(result["saes"].items()):
        steps = sorted(entry["checkpoints"], key=int)
        sh = [entry["checkpoints"][s]["shares"] for s in steps]
        fig.add_trace(go.Scatter(x=steps, y=[s["mix_paper"] for s in sh], name=f"{sae_id}: mix (paper)",
                                 legendgroup=sae_id), row=1, col=1)
        fig.add_trace(go.Scatter(x=steps, y=[s.get("semantic") for s in sh], name=f"{sae_id}: semantic",
                                 legendgroup=sae_id), row=1, col=2)
        fig.add_trace(go.Scatter(x=steps, y=[s.get("synonym") for s in sh], name=f"{sae_id}: synonym",
                                 legendgroup=sae_id), row=1, col=3)
    fig.update_xaxes(type="category", title_text="checkpoint (step)")
    fig.update_yaxes(range=[0, 1], title_text="share")
    fig.update_layout(title="Planted truth (toy model) vs recovered shares (SAE features)")
    return fig


def write_recovery(run_dir: str | Path, toy_dir: str | Path | None = None, png: bool = False) -> Path:
    """Write ``RUN/analysis/planted_recovery.json`` and its figure; return the JSON's path."""
    from llmjp_ckpt import atomic, plotting

    run = Path(run_dir)
    result = planted_recovery(run, toy_dir)
    path = atomic.write_json(run / "analysis" / FILE, result)
    plotting.write_figures({"planted_vs_recovered": figure(result)}, run / "analysis" / "figures", png)
    return path


# --- meaning sources for the synonym label, against the planted truth ---------------------------
def synonym_sources(run_dir: str | Path, thresholds: Iterable[float] = (0.6,), toy_dir: str | Path | None = None,
                    n_examples: int = 50) -> dict[str, Any]:
    """What each source of meaning adds to the ``synonym`` label on the toy, where the truth is
    known: every live feature of every SAE is relabelled with the rules alone, with JMdict, and
    with the model's own input embeddings (``W_E`` of the last checkpoint, cosine ≥ each of
    ``thresholds``) with and without JMdict; per source, precision and recall of ``synonym`` for
    the planted ``variant`` / ``translation`` features, and the ``synonym`` share of all live
    features. ``{"sources", "saes": {sae_id: {step: {source: scores}}}}``."""
    from llmjp_ckpt.features.analyze import FeaturesConfig, _token_text_of, default_model_loader, feature_rows
    from llmjp_ckpt.features.store import FeatureStore
    from llmjp_ckpt.labels.granularity import RuleBackend, RuleParams, embedder_from_model
    from llmjp_ckpt.runfolder import sae_folders, step_dir
    from llmjp_ckpt.saes.dead import alive_mask
    from llmjp_ckpt.toy.planted import scored_inputs

    run, _, concepts, _ = scored_inputs(run_dir, toy_dir)
    folders = [(s, sid, f) for s, sid, f in sae_folders(run) if (run / "features" / step_dir(s) / sid).is_dir()]
    if not folders:
        raise UserError(f"{run}: no features/iter_*/<sae_id>/ stores (run the features stage first)")
    last = default_model_loader(run, FeaturesConfig(), folders[0][2])(max(s for s, _, _ in folders))
    tt = _token_text_of(last)
    embed = embedder_from_model(last)
    params = RuleParams.load()
    sources: dict[str, RuleBackend] = {"rules": RuleBackend(params=params, use_dictionary=False),
                                       "rules+JMdict": RuleBackend(params=params)}
    for t in thresholds:
        sources[f"rules+W_E>={t}"] = RuleBackend(params=params, embed=embed, embed_threshold=t, use_dictionary=False)
        sources[f"rules+JMdict+W_E>={t}"] = RuleBackend(params=params, embed=embed, embed_threshold=t)
    forms = token_forms(concepts)
    out: dict[str, Any] = {"sources": list(sources), "embeddings_of_step": max(s for s, _, _ in folders), "saes": {}}
    for step, sae_id, folder in folders:
        store = FeatureStore.load(run / "features" / step_dir(step) / sae_id)
        live = [int(f) for f in alive_mask(folder).nonzero()[0]]
        kinds = {f: p for f in live if (p := planted_kind(store_top_ids(store, f), forms)) is not None}
        row: dict[str, Any] = {}
        for name, backend in sources.items():
            gran = {r["feature"]: r["granularity"] for r in feature_rows(store, step, sae_id, tt, n_examples, backend)}
            scored = score_rows([{**p, "granularity": gran[f]} for f, p in kinds.items()])["synonym"]
            labelled = [gran[f] for f in live if gran[f]]
            row[name] = {**scored, "synonym_share": round(sum(g == "synonym" for g in labelled) / len(labelled), 4)
                         if labelled else None}
        out["saes"].setdefault(sae_id, {})[str(step)] = row
    return out
