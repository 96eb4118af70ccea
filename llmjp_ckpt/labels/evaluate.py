"""Fit the rule thresholds on labelled features and measure agreement where it matters.

``python -m llmjp_ckpt.labels.evaluate --input ../shared/data/peer-labels-dev.jsonl.gz`` prints,
first, **leave-one-checkpoint-out** (LOCO) validation: for each checkpoint, the thresholds are
fitted on the other checkpoints' features only and scored on it (κ, recall per class, every
class share against the authors'). That is how the classifier is used — on checkpoints nobody
labelled — and features of one checkpoint resemble each other, so a split *within*
checkpoints flatters it. Second, the older seeded split (a hash of ``(checkpoint, feature)``)
as a secondary figure. ``--ablation`` adds LOCO κ with each meaning source taken away;
``--write-params`` stores thresholds fitted on all features in ``granularity_params.json``.
Fitting: coordinate search over small grids, objective κ minus a penalty for class shares more
than 5 points off at a fitted checkpoint (:func:`fit`), minus a pull toward the a-priori
thresholds whose strength an inner LOCO on the fitted checkpoints chooses (:func:`fit_auto`).
"""

from __future__ import annotations

import argparse
import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from llmjp_ckpt import atomic
from llmjp_ckpt.labels.agreement import Agreement, agreement
from llmjp_ckpt.labels.dictionary import default_dictionary
from llmjp_ckpt.labels.examples import FeatureRecord, load_records
from llmjp_ckpt.labels.granularity import (
    LABELS,
    PARAMS_FILE,
    Dictionary,
    RuleParams,
    TokenStats,
    decide,
    token_stats,
)
from llmjp_ckpt.labels.meaning import WordVectors, default_vectors, embedder, null_cosine

DEV_FILE = Path(__file__).resolve().parents[3] / "shared" / "data" / "peer-labels-dev.jsonl.gz"

# The synonym thresholds (syn_variant, syn_meaning, syn_cluster) are not searched: 9 synonym
# features in all cannot fit them; they stay at RuleParams' defaults, set by definition.
GRID = {
    "token_p1": [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95],
    "token_p2": [0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0],
    "token_pair_p1": [0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5],
    "sem_shape": [0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.9],
    "sem_mix": [0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35],
    "min_examples": [1, 2, 3, 5, 8],
    "sem_ctx_max": [0.5, 0.6, 0.7, 0.8, 0.9, 1.0],
    "sem_distinct_max": [0.7, 0.8, 0.85, 0.9, 1.0],
}


# The word-vector thresholds (``meaning``, optional): searched only by the ablation's vector rows
# (off a priori in RuleParams); not in GRID, so the shipped fit does not depend on ja-ginza.
VEC_GRID = {
    "sem_vec_min": [0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 1.0],
    "sem_vec_veto": [0.0, 0.05, 0.1, 0.15, 0.2, 0.25],
}


def in_fit_part(rec: FeatureRecord, seed: int = 0, fit_fraction: float = 0.6) -> bool:
    """Seeded hash split of (checkpoint, feature): True for the fit part."""
    h = hashlib.sha256(f"{seed}:{rec.checkpoint}:{rec.feature}".encode()).hexdigest()
    return int(h[:8], 16) / 0xFFFFFFFF < fit_fraction


# Strengths of the pull toward the a-priori thresholds (``RuleParams()``) that the fit may use;
# one is chosen by an inner LOCO on the fitted checkpoints only (:func:`choose_shrink`).
SHRINK = (0.0, 0.01, 0.02, 0.05, 0.1, 1.0)


def _penalty(p: RuleParams, prior: RuleParams, grid: Mapping[str, Sequence]) -> float:
    """How far ``p`` moved from ``prior``: Σ |Δ| / grid range over the searched thresholds."""
    return sum(abs(getattr(p, k) - getattr(prior, k)) / ((max(v) - min(v)) or 1)
               for k, v in grid.items())


def _score(stats: Sequence[TokenStats], gold: Sequence[str], groups: Sequence, p: RuleParams,
           shrink: float = 0.0, prior: RuleParams | None = None,
           grid: Mapping[str, Sequence] | None = None) -> float:
    pred = [decide(s, p)[0] for s in stats]
    a = agreement(gold, pred, LABELS, groups)
    score = a.kappa - 2.0 * max(0.0, a.max_share_gap() - 0.05)
    if shrink:
        score -= shrink * _penalty(p, prior or RuleParams(), GRID if grid is None else grid)
    return score


def fit(stats: Sequence[TokenStats], gold: Sequence[str], groups: Sequence,
        start: RuleParams | None = None, rounds: int = 3,
        grid: Mapping[str, Sequence] | None = None, shrink: float = 0.0) -> RuleParams:
    """Coordinate search over ``grid`` (:data:`GRID`), starting from ``start`` (the a-priori
    ``RuleParams()``); ``shrink`` > 0 penalises moving away from ``start``."""
    grid = GRID if grid is None else grid
    prior = best = start or RuleParams()
    best_score = _score(stats, gold, groups, best, shrink, prior, grid)
    for _ in range(rounds):
        changed = False
        for name, values in grid.items():
            for v in values:
                cand = replace(best, **{name: v})
                s = _score(stats, gold, groups, cand, shrink, prior, grid)
                if s > best_score + 1e-9:
                    best, best_score, changed = cand, s, True
        if not changed:
            break
    return best


def choose_shrink(stats: Sequence[TokenStats], gold: Sequence[str], groups: Sequence,
                  grid: Mapping[str, Sequence] | None = None, start: RuleParams | None = None,
                  candidates: Sequence[float] = SHRINK) -> float:
    """The :data:`SHRINK` strength whose fits transfer best between the given checkpoints:
    mean κ over an inner LOCO (fit on all but one of ``groups``, score that one); ties go to
    the stronger pull. Fewer than two checkpoints: no inner LOCO, 0 (a plain fit)."""
    cks = sorted(set(groups), key=str)
    if len(cks) < 2:
        return 0.0
    best: tuple[float, float] | None = None
    for lam in candidates:
        ks = []
        for held in cks:
            tr = [i for i, g in enumerate(groups) if g != held]
            te = [i for i, g in enumerate(groups) if g == held]
            p = fit([stats[i] for i in tr], [gold[i] for i in tr], [groups[i] for i in tr],
                    start=start, grid=grid, shrink=lam)
            ks.append(agreement([gold[i] for i in te], [decide(stats[i], p)[0] for i in te],
                                LABELS, [held] * len(te)).kappa)
        key = (round(sum(ks) / len(ks), 9), lam)
        if best is None or key > best:
            best = key
    assert best is not None
    return best[1]


def fit_auto(stats: Sequence[TokenStats], gold: Sequence[str], groups: Sequence,
             grid: Mapping[str, Sequence] | None = None, start: RuleParams | None = None,
             shrink: float | None = None) -> tuple[RuleParams, float]:
    """:func:`fit` with the pull strength ``shrink`` (None: :func:`choose_shrink`); returns the
    thresholds and the strength used."""
    lam = choose_shrink(stats, gold, groups, grid, start) if shrink is None else shrink
    return fit(stats, gold, groups, start=start, grid=grid, shrink=lam), lam


def evaluate(records: Sequence[FeatureRecord], params: RuleParams,
             dictionary: Dictionary | None = None) -> Agreement:
    """Agreement of :func:`decide` with ``params`` against the records' own granularity."""
    stats = [token_stats(r.examples, dictionary=dictionary) for r in records]
    pred = [decide(s, params)[0] for s in stats]
    return agreement([r.granularity for r in records], pred, LABELS, [r.checkpoint for r in records])


@dataclass
class Rotation:
    """One LOCO rotation: thresholds fitted without ``held``, scored on ``held``."""

    held: int
    n_fit: int
    params: RuleParams
    agreement: Agreement
    pred: list[str]  # predicted labels of the held-out features, in record order
    gold: list[str]
    shrink: float = 0.0  # pull toward the a-priori thresholds, chosen by the inner LOCO


def loco_from_stats(stats: Sequence[TokenStats], gold: Sequence[str], groups: Sequence,
                    grid: Mapping[str, Sequence] | None = None,
                    start: RuleParams | None = None,
                    shrink: float | None = None) -> list[Rotation]:
    """Leave-one-checkpoint-out: one :class:`Rotation` per distinct value of ``groups``; the
    fit (and its pull strength, :func:`choose_shrink`) sees the other checkpoints only."""
    out = []
    for held in sorted(set(groups)):
        tr = [i for i, g in enumerate(groups) if g != held]
        te = [i for i, g in enumerate(groups) if g == held]
        p, lam = fit_auto([stats[i] for i in tr], [gold[i] for i in tr], [groups[i] for i in tr],
                          grid=grid, start=start, shrink=shrink)
        pred = [decide(stats[i], p)[0] for i in te]
        g = [gold[i] for i in te]
        out.append(Rotation(held, len(tr), p, agreement(g, pred, LABELS, [held] * len(te)),
                            pred, g, lam))
    return out


def loco(records: Sequence[FeatureRecord], dictionary: Dictionary | None = None,
         grid: Mapping[str, Sequence] | None = None, start: RuleParams | None = None,
         shrink: float | None = None, **stats_kw) -> list[Rotation]:
    """LOCO validation of the rule classifier on ``records`` (labelled, ≥ 2 checkpoints)."""
    recs = [r for r in records if r.granularity]
    if len({r.checkpoint for r in recs}) < 2:
        raise ValueError("LOCO needs labelled features of at least two checkpoints")
    stats = [token_stats(r.examples, dictionary=dictionary, **stats_kw) for r in recs]
    return loco_from_stats(stats, [r.granularity for r in recs], [r.checkpoint for r in recs],
                           grid=grid, start=start, shrink=shrink)


def loco_confusion(rotations: Sequence[Rotation]) -> list[list[int]]:
    """The pooled LOCO confusion matrix (rows gold, columns predicted, :data:`LABELS` order)."""
    m = [[0] * len(LABELS) for _ in LABELS]
    for r in rotations:
        for i, row in enumerate(r.agreement.matrix):
            for j, v in enumerate(row):
                m[i][j] += v
    return m


def confusion_info(rotations: Sequence[Rotation]) -> dict:
    """``{"loco_confusion": {labels, matrix}}`` for a thresholds file's ``fit`` record (empty
    without rotations): what :func:`llmjp_ckpt.labels.uncertainty.load_confusion` reads so the
    share figures' intervals carry the classifier's errors."""
    if not rotations:
        return {}
    return {"loco_confusion": {"labels": list(LABELS), "matrix": loco_confusion(rotations),
                               "rows": "authors' (true) label", "columns": "ours (predicted)"}}


def format_loco(rotations: Sequence[Rotation], title: str = "LOCO") -> str:
    """Per rotation: κ, recall per class and every class share, ours / the authors'."""
    lines = [f"{title}: fit on the other checkpoints, scored on the held-out one"]
    head = "held-out  n    kappa  " + "  ".join(f"rec {k[:5]:<5}" for k in LABELS)
    lines.append(head + "  shares ours/authors (" + ", ".join(k[:5] for k in LABELS)
                 + ")  largest gap")
    for r in rotations:
        a = r.agreement
        rec = "  ".join(f"{'-' if math.isnan(v) else f'{v:.2f}':>9}" for v in a.recall.values())
        sh = ", ".join(f"{100 * a.shares_pred[r.held][k]:.0f}/{100 * a.shares_gold[r.held][k]:.0f}"
                       for k in LABELS)
        lines.append(f"{r.held:<9} {a.n:<4} {a.kappa:.3f}  {rec} {sh}  "
                     f"{100 * a.max_share_gap():.1f}")
    ks = [r.agreement.kappa for r in rotations]
    lines.append(f"min kappa {min(ks):.3f}, mean {sum(ks) / len(ks):.3f}; largest share gap "
                 f"{100 * max(r.agreement.max_share_gap() for r in rotations):.1f} points")
    return "\n".join(lines)


def fit_records(records: Sequence[FeatureRecord], dictionary: Dictionary | None = None,
                **stats_kw) -> tuple[RuleParams, float]:
    """Thresholds fitted on every labelled feature of ``records``, and the pull strength toward
    the a-priori thresholds that an inner LOCO over their checkpoints chose."""
    recs = [r for r in records if r.granularity]
    if not recs:
        raise ValueError("no feature carries a granularity label")
    stats = [token_stats(r.examples, dictionary=dictionary, **stats_kw) for r in recs]
    return fit_auto(stats, [r.granularity for r in recs], [r.checkpoint for r in recs])


def write_params(path: str | Path, params: RuleParams, info: dict) -> None:
    """Store ``params`` where :meth:`RuleParams.load` reads them, with how they were fitted."""
    atomic.write_json(path, {
        "comment": "RuleBackend thresholds fitted by llmjp_ckpt.labels.evaluate (coordinate "
                   "search, see docs/labels-eval.md); 'fit' says on what",
        "fit": info,
        "params": asdict(params),
    })


def refit(records: Sequence[FeatureRecord], labels_path: str | Path, out: str | Path) -> str:
    """``label --fit``: refit the thresholds on a researcher's own labels; write ``out``.

    ``labels_path`` is a JSONL of ``{"checkpoint", "feature", "granularity"}`` lines (what
    ``label --manual`` appends; a peer-format file with examples works too); each label is
    joined to the features of ``records`` by ``(checkpoint, feature)``. Returns the report:
    LOCO on those labels (when they span two or more checkpoints), then the fitted thresholds.
    """
    from llmjp_ckpt.errors import UserError
    from llmjp_ckpt.labels.manual import read_labels

    labels = read_labels(labels_path)
    if not labels:
        raise UserError(f"{labels_path}: no granularity labels (expected JSONL lines with "
                        "checkpoint, feature, granularity)")
    by_key = {(r.checkpoint, r.feature): r for r in records}
    missing = [k for k in labels if k not in by_key]
    if missing:
        raise UserError(f"{labels_path}: {len(missing)} labelled feature(s) not in the examples "
                        f"file, first (checkpoint, feature) = {missing[0]}")
    recs = [replace(by_key[k], granularity=g) for k, g in labels.items()]
    dic = default_dictionary()
    ckpts = sorted({r.checkpoint for r in recs}, key=str)
    lines = [f"{len(recs)} labelled features, checkpoints {ckpts}; dictionary "
             + ("JMdict" if dic is not None else "none")]
    rotations: list[Rotation] = []
    if len({r.checkpoint for r in recs}) >= 2:
        rotations = loco(recs, dic)
        lines.append(format_loco(rotations, "LOCO on your labels"))
    else:
        lines.append("LOCO needs labels from two or more checkpoints: not reported")
    params, lam = fit_records(recs, dic)
    write_params(out, params, {
        "input": Path(labels_path).name, "n_fit": len(recs), "split": "all given labels",
        "dictionary": "JMdict (jamdict-data)" if dic is not None else "none",
        "shrink": lam,
        "loco_kappa": {str(r.held): round(r.agreement.kappa, 3) for r in rotations},
        **confusion_info(rotations)})
    lines.append(f"fitted (pull toward the a-priori thresholds {lam}, chosen by inner LOCO): "
                 + ", ".join(f"{k} {v}" for k, v in asdict(params).items()))
    lines.append(f"wrote {out} (use it: features config `granularity_params: {out}`)")
    return "\n".join(lines)


def ablation(records: Sequence[FeatureRecord], dictionary: Dictionary | None,
             vectors: WordVectors | None = None) -> str:
    """LOCO κ per rotation as meaning sources and fitting safeguards are added one at a time;
    with ``vectors`` (ja-ginza), the word-vector rules too, on the shipped and the strict rules."""
    old = {k: v for k, v in GRID.items() if k != "sem_distinct_max"}
    no_ctx = {k: v for k, v in old.items() if k != "sem_ctx_max"}
    off = RuleParams(sem_frame_ctx=0.0, sem_distinct_max=1.0)  # the two newest rules off
    frame = RuleParams(sem_distinct_max=1.0)
    strict = dict(GRID, sem_frame_ctx=[0.0, 0.02, 0.04, 0.05, 0.06, 0.08, 0.1])
    rows = [("spelling/inflection/loanword rules only", None, no_ctx, off, 0.0),
            ("+ JMdict glosses", dictionary, no_ctx, off, 0.0),
            ("+ context variety (sem_ctx_max)", dictionary, old, off, 0.0),
            ("+ fixed-frame rule (sem_frame_ctx 0.05)", dictionary, old, frame, 0.0),
            ("+ inner-LOCO pull to a-priori thresholds", dictionary, old, frame, None),
            ("+ recurring forms (sem_distinct_max, prior 0.85)", dictionary, GRID, None, None),
            ("  the same, a-priori thresholds, nothing fitted", dictionary, {}, None, 0.0),
            ("  strict: both new rules off a priori, fitted in LOCO", dictionary, strict, off, None)]
    if vectors is not None:
        null = round(null_cosine(vectors), 2)  # a property of the table: no labels read
        vgrid = {"sem_vec_min": sorted({*VEC_GRID["sem_vec_min"], null}),
                 "sem_vec_veto": VEC_GRID["sem_vec_veto"]}
        rows += [("+ word vectors (ja-ginza), off a priori, fitted in LOCO", vectors,
                  dict(GRID, **vgrid), None, None),
                 ("  strict + word vectors, off a priori, fitted in LOCO", vectors,
                  dict(strict, **vgrid), off, None),
                 (f"  strict + word vectors, prior sem_vec_min {null} (table's q95)", vectors,
                  dict(strict, **vgrid), replace(off, sem_vec_min=null), None),
                 ("  shipped + vector cosine >= 0.6 as a synonym relation", "embed", GRID, None,
                  None)]
    lines = ["ABLATION: LOCO kappa per held-out checkpoint (min, mean)"]
    stats = {}
    recs = [r for r in records if r.granularity]
    for name, d, grid, start, shrink in rows:
        if d is None and name.startswith("+ JMdict"):
            lines.append(f"  {name}: skipped (jamdict-data not installed)")
            continue
        if id(d) not in stats:
            kw: dict = ({"vectors": d, "dictionary": dictionary} if isinstance(d, WordVectors)
                        else {"embed": embedder(vectors), "dictionary": dictionary}
                        if d == "embed" and vectors is not None else {"dictionary": d})
            stats[id(d)] = [token_stats(r.examples, **kw) for r in recs]
        rots = loco_from_stats(stats[id(d)], [r.granularity for r in recs],
                               [r.checkpoint for r in recs], grid=grid, start=start, shrink=shrink)
        ks = [r.agreement.kappa for r in rots]
        gap = max(r.agreement.max_share_gap() for r in rots)
        lines.append(f"  {name:<62} " + "  ".join(f"{k:.3f}" for k in ks)
                     + f"   (min {min(ks):.3f}, mean {sum(ks) / len(ks):.3f}; share gap "
                     f"{100 * gap:.1f})")
        if "strict" in name:  # the honest figures: recall and shares per rotation too
            lines += ["      " + x for x in format_loco(rots, "strict").splitlines()[1:-1]]
    if vectors is None:
        lines.append("  word vectors: skipped (ja-ginza not installed: pip install 'llmjp-ckpt[meaning]')")
    lines.append("  input embeddings of the checkpoint: not measurable here (the dev file has no "
                 "checkpoint); measured on the toy: scripts/toy_synonym_sources.py (docs/labels-eval.md)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", type=Path, help=f"labelled features (default {DEV_FILE})")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fit-fraction", type=float, default=0.6)
    ap.add_argument("--write-params", action="store_true", help=f"write {PARAMS_FILE.name}")
    ap.add_argument("--errors", action="store_true", help="list every feature labelled differently")
    ap.add_argument("--no-dictionary", action="store_true",
                    help="leave JMdict out (spelling, inflection and loanword rules only)")
    ap.add_argument("--ablation", action="store_true",
                    help="LOCO kappa with each meaning source taken away")
    args = ap.parse_args(argv)
    if args.input is None:
        args.input = DEV_FILE
    dic = None if args.no_dictionary else default_dictionary()
    print("dictionary:", "JMdict (jamdict-data)" if dic is not None else "none")

    records = [r for r in load_records(args.input) if r.granularity]
    rotations = loco(records, dic)
    print(format_loco(rotations, "LOCO (the lead figure)"))
    for r in rotations:
        print(f"  params without {r.held} (shrink {r.shrink}): "
              + ", ".join(f"{k} {v}" for k, v in asdict(r.params).items() if k in GRID))
    from llmjp_ckpt.labels.uncertainty import format_intervals, share_intervals

    print("LOCO-predicted shares with 95 % bootstrap intervals (features and the pooled LOCO "
          "confusion resampled):")
    print(format_intervals(share_intervals({r.held: r.pred for r in rotations},
                                           loco_confusion(rotations))))
    if args.ablation:
        print()
        vec = default_vectors()
        print("word vectors:", vec.name if vec is not None else "none")
        print(ablation(records, dic, vec))
    print("\nSECONDARY: seeded split across all checkpoints")
    fit_part = [r for r in records if in_fit_part(r, args.seed, args.fit_fraction)]
    held = [r for r in records if not in_fit_part(r, args.seed, args.fit_fraction)]
    stats = [token_stats(r.examples, dictionary=dic) for r in fit_part]
    params = fit(stats, [r.granularity for r in fit_part], [r.checkpoint for r in fit_part])
    print(f"fitted on {len(fit_part)} features, held out {len(held)} (seed {args.seed})")
    print("params:", asdict(params))
    for title, part in (("FIT PART", fit_part), ("HELD-OUT PART", held), ("ALL", records)):
        print()
        print(evaluate(part, params, dic).format(title))
    if args.errors:
        print("\nfeatures labelled differently (checkpoint feature part: authors -> ours, top forms):")
        for r in records:
            st = token_stats(r.examples, dictionary=dic)
            label, conf = decide(st, params)
            if label != r.granularity:
                part = "fit" if in_fit_part(r, args.seed, args.fit_fraction) else "held"
                forms = ", ".join(f"{f!r}x{c}" for f, c in st.top_forms[:4])
                print(f"  {r.checkpoint} {r.feature} {part}: {r.granularity} -> {label} ({conf:.2f}) {forms}")
    if args.write_params:
        params_all, lam = fit_records(records, dic)
        write_params(PARAMS_FILE, params_all, {
            "input": args.input.name, "n_fit": len(records), "split": "all labelled features",
            "dictionary": "JMdict (jamdict-data)" if dic is not None else "none",
            "shrink": lam,
            "loco_kappa": {str(r.held): round(r.agreement.kappa, 3) for r in rotations},
            **confusion_info(rotations)})
        print(f"\nwrote {PARAMS_FILE} (fitted on all {len(records)} features)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
