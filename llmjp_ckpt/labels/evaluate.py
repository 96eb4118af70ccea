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
than 5 points off at a fitted checkpoint (:func:`fit`).
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
}


def in_fit_part(rec: FeatureRecord, seed: int = 0, fit_fraction: float = 0.6) -> bool:
    """Seeded hash split of (checkpoint, feature): True for the fit part."""
    h = hashlib.sha256(f"{seed}:{rec.checkpoint}:{rec.feature}".encode()).hexdigest()
    return int(h[:8], 16) / 0xFFFFFFFF < fit_fraction


def _score(stats: Sequence[TokenStats], gold: Sequence[str], groups: Sequence, p: RuleParams) -> float:
    pred = [decide(s, p)[0] for s in stats]
    a = agreement(gold, pred, LABELS, groups)
    return a.kappa - 2.0 * max(0.0, a.max_share_gap() - 0.05)


def fit(stats: Sequence[TokenStats], gold: Sequence[str], groups: Sequence,
        start: RuleParams | None = None, rounds: int = 3,
        grid: Mapping[str, Sequence] | None = None) -> RuleParams:
    """Coordinate search over ``grid`` (:data:`GRID`), starting from ``start`` (defaults)."""
    best = start or RuleParams()
    best_score = _score(stats, gold, groups, best)
    for _ in range(rounds):
        changed = False
        for name, values in (GRID if grid is None else grid).items():
            for v in values:
                cand = replace(best, **{name: v})
                s = _score(stats, gold, groups, cand)
                if s > best_score + 1e-9:
                    best, best_score, changed = cand, s, True
        if not changed:
            break
    return best


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


def loco_from_stats(stats: Sequence[TokenStats], gold: Sequence[str], groups: Sequence,
                    grid: Mapping[str, Sequence] | None = None,
                    start: RuleParams | None = None) -> list[Rotation]:
    """Leave-one-checkpoint-out: one :class:`Rotation` per distinct value of ``groups``."""
    out = []
    for held in sorted(set(groups)):
        tr = [i for i, g in enumerate(groups) if g != held]
        te = [i for i, g in enumerate(groups) if g == held]
        p = fit([stats[i] for i in tr], [gold[i] for i in tr], [groups[i] for i in tr],
                start=start, grid=grid)
        pred = [decide(stats[i], p)[0] for i in te]
        g = [gold[i] for i in te]
        out.append(Rotation(held, len(tr), p, agreement(g, pred, LABELS, [held] * len(te)),
                            pred, g))
    return out


def loco(records: Sequence[FeatureRecord], dictionary: Dictionary | None = None,
         grid: Mapping[str, Sequence] | None = None, **stats_kw) -> list[Rotation]:
    """LOCO validation of the rule classifier on ``records`` (labelled, ≥ 2 checkpoints)."""
    recs = [r for r in records if r.granularity]
    if len({r.checkpoint for r in recs}) < 2:
        raise ValueError("LOCO needs labelled features of at least two checkpoints")
    stats = [token_stats(r.examples, dictionary=dictionary, **stats_kw) for r in recs]
    return loco_from_stats(stats, [r.granularity for r in recs], [r.checkpoint for r in recs],
                           grid=grid)


def loco_confusion(rotations: Sequence[Rotation]) -> list[list[int]]:
    """The pooled LOCO confusion matrix (rows gold, columns predicted, :data:`LABELS` order)."""
    m = [[0] * len(LABELS) for _ in LABELS]
    for r in rotations:
        for i, row in enumerate(r.agreement.matrix):
            for j, v in enumerate(row):
                m[i][j] += v
    return m


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
                **stats_kw) -> RuleParams:
    """Thresholds fitted on every labelled feature of ``records``."""
    recs = [r for r in records if r.granularity]
    if not recs:
        raise ValueError("no feature carries a granularity label")
    stats = [token_stats(r.examples, dictionary=dictionary, **stats_kw) for r in recs]
    return fit(stats, [r.granularity for r in recs], [r.checkpoint for r in recs])


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
    params = fit_records(recs, dic)
    write_params(out, params, {
        "input": Path(labels_path).name, "n_fit": len(recs), "split": "all given labels",
        "dictionary": "JMdict (jamdict-data)" if dic is not None else "none",
        "loco_kappa": {str(r.held): round(r.agreement.kappa, 3) for r in rotations}})
    lines.append("fitted: " + ", ".join(f"{k} {v}" for k, v in asdict(params).items()))
    lines.append(f"wrote {out} (use it: features config `granularity_params: {out}`)")
    return "\n".join(lines)


def ablation(records: Sequence[FeatureRecord], dictionary: Dictionary | None) -> str:
    """LOCO κ per rotation as meaning sources are added one at a time (what each one adds)."""
    no_ctx = {k: v for k, v in GRID.items() if k != "sem_ctx_max"}
    rows = [("spelling/inflection/loanword rules only", None, no_ctx),
            ("+ JMdict glosses", dictionary, no_ctx),
            ("+ context variety (sem_ctx_max)", dictionary, GRID)]
    lines = ["ABLATION: LOCO kappa per held-out checkpoint (min, mean)"]
    for name, d, grid in rows:
        if d is None and name.startswith("+ JMdict"):
            lines.append(f"  {name}: skipped (jamdict-data not installed)")
            continue
        ks = [r.agreement.kappa for r in loco(records, d, grid=grid)]
        lines.append(f"  {name:<42} " + "  ".join(f"{k:.3f}" for k in ks)
                     + f"   (min {min(ks):.3f}, mean {sum(ks) / len(ks):.3f})")
    lines.append("  input embeddings of the checkpoint: not measurable here (the dev file has no "
                 "checkpoint); hook: RuleBackend(embed=embedder_from_vocab(vocab, W_E))")
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
        print(f"  params without {r.held}: "
              + ", ".join(f"{k} {v}" for k, v in asdict(r.params).items() if k in GRID))
    from llmjp_ckpt.labels.uncertainty import format_intervals, share_intervals

    print("LOCO-predicted shares with 95 % bootstrap intervals (features and the pooled LOCO "
          "confusion resampled):")
    print(format_intervals(share_intervals({r.held: r.pred for r in rotations},
                                           loco_confusion(rotations))))
    if args.ablation:
        print()
        print(ablation(records, dic))
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
        params_all = fit_records(records, dic)
        write_params(PARAMS_FILE, params_all, {
            "input": args.input.name, "n_fit": len(records), "split": "all labelled features",
            "dictionary": "JMdict (jamdict-data)" if dic is not None else "none",
            "loco_kappa": {str(r.held): round(r.agreement.kappa, 3) for r in rotations}})
        print(f"\nwrote {PARAMS_FILE} (fitted on all {len(records)} features)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
