"""Fit the rule thresholds on part of a labelled file and report agreement on both parts.

``python -m llmjp_ckpt.labels.evaluate --input ../shared/data/peer-labels-dev.jsonl.gz``
prints the report; ``--write-params`` stores the fitted thresholds in
``llmjp_ckpt/labels/granularity_params.json``. The split is a seeded hash of
``(checkpoint, feature)`` so it does not depend on file order, and only the *fit* part is
used to choose thresholds (coordinate search over small grids, objective κ minus a penalty
for class shares more than 5 points off per checkpoint).
"""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Sequence
from dataclasses import asdict, replace
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

# The synonym thresholds (syn_variant, syn_meaning, syn_cluster) are not searched: 9 synonym
# features in all cannot fit them; they stay at RuleParams' defaults, set by definition.
GRID = {
    "token_p1": [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95],
    "token_p2": [0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0],
    "token_pair_p1": [0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5],
    "sem_shape": [0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.9],
    "sem_mix": [0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35],
    "min_examples": [1, 2, 3, 5, 8],
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
        start: RuleParams | None = None, rounds: int = 3) -> RuleParams:
    """Coordinate search over :data:`GRID`, starting from ``start`` (defaults)."""
    best = start or RuleParams()
    best_score = _score(stats, gold, groups, best)
    for _ in range(rounds):
        changed = False
        for name, values in GRID.items():
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", required=True, type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fit-fraction", type=float, default=0.6)
    ap.add_argument("--write-params", action="store_true", help=f"write {PARAMS_FILE.name}")
    ap.add_argument("--errors", action="store_true", help="list every feature labelled differently")
    ap.add_argument("--no-dictionary", action="store_true",
                    help="leave JMdict out (spelling, inflection and loanword rules only)")
    args = ap.parse_args(argv)
    dic = None if args.no_dictionary else default_dictionary()
    print("dictionary:", "JMdict (jamdict-data)" if dic is not None else "none")

    records = [r for r in load_records(args.input) if r.granularity]
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
        atomic.write_json(PARAMS_FILE, {
            "comment": "RuleBackend thresholds fitted by llmjp_ckpt.labels.evaluate on the fit "
                       "part of the authors' labelled features; see docs/labels-eval.md",
            "fit": {"input": args.input.name, "seed": args.seed,
                    "fit_fraction": args.fit_fraction, "n_fit": len(fit_part),
                    "dictionary": "JMdict (jamdict-data)" if dic is not None else "none"},
            "params": asdict(params),
        })
        print(f"\nwrote {PARAMS_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
