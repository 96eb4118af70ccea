"""``llmjp-ckpt label``: language and granularity per feature of an example file, scored against
the labels the file carries (or labelled by hand with ``--manual``)."""

from __future__ import annotations

import argparse

HELP = (
    "Label the features of an example file (language, granularity) and score the labels against "
    "the file's own; or label granularity by hand."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", required=True,
                   help="feature examples: peer JSONL(.gz), a published per-feature JSON, or a folder of them")
    p.add_argument("--out", help="CSV to write, one row per feature (required unless --manual)")
    p.add_argument("--language-rule", choices=["paper", "script"], default="script",
                   help="language rule for the 'language' column (default: script)")
    p.add_argument("--granularity", choices=["auto", "none"], default="auto",
                   help="auto: the rule classifier; none: leave the column empty")
    p.add_argument("--lexicon", metavar="FILE.tsv",
                   help="synonym/translation sets, one per line, tab-separated (granularity hook)")
    p.add_argument("--manual", metavar="LABELS.jsonl",
                   help="label granularity by hand in the terminal, appending to this JSONL (resumable)")
    p.add_argument("--no-color", action="store_true", help="manual mode: brackets instead of colours")


def run(args: argparse.Namespace) -> int:
    import csv
    import io
    import math
    import sys

    from tqdm import tqdm

    from llmjp_ckpt import atomic
    from llmjp_ckpt.errors import UserError
    from llmjp_ckpt.labels import GRANULARITIES, LANGUAGES
    from llmjp_ckpt.labels.agreement import agreement
    from llmjp_ckpt.labels.examples import load_records
    from llmjp_ckpt.labels.granularity import RuleBackend, classify
    from llmjp_ckpt.labels.language import RULES, paper_language, script_language
    from llmjp_ckpt.labels.lexical import load_lexicon

    records = load_records(args.input)
    backend = RuleBackend(lexicon=load_lexicon(args.lexicon)) if args.lexicon else None
    if args.manual:
        from llmjp_ckpt.labels.manual import label_interactively

        n = label_interactively(records, args.manual, color=False if args.no_color else None,
                                suggest=lambda ex: classify(ex, backend))
        print(f"{n} labels appended to {args.manual}")
        return 0
    if not args.out:
        raise UserError("--out: expected a CSV path (or use --manual LABELS.jsonl)")

    rule = RULES[args.language_rule]
    rows = []
    for rec in tqdm(records, desc="labelling features", disable=len(records) < 500):
        gran, conf = (classify(rec.examples, backend) if args.granularity == "auto"
                      else ("", float("nan")))
        rows.append({
            "checkpoint": "" if rec.checkpoint is None else rec.checkpoint,
            "feature": "" if rec.feature is None else rec.feature,
            "n_examples": len(rec.examples),
            "language": rule(rec.examples),
            "language_paper": paper_language(rec.examples),
            "language_script": script_language(rec.examples),
            "granularity": gran,
            "granularity_confidence": "" if math.isnan(conf) else f"{conf:.3f}",
            "file_language": rec.language or "",
            "file_granularity": rec.granularity or "",
        })
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic.write_text(args.out, buf.getvalue())
    print(f"wrote {len(rows)} features to {args.out}")

    with_lang = [r for r in rows if r["file_language"]]
    if with_lang:
        a = agreement([r["file_language"] for r in with_lang], [r["language"] for r in with_lang],
                      LANGUAGES)
        same = sum(r["file_language"] == r["language"] for r in with_lang)
        print(f"\nlanguage ({args.language_rule} rule) vs file: {same}/{len(with_lang)} agree, "
              f"kappa={a.kappa:.3f}")
    with_gran = [r for r in rows if r["file_granularity"] and r["granularity"]]
    if with_gran:
        a = agreement([r["file_granularity"] for r in with_gran], [r["granularity"] for r in with_gran],
                      GRANULARITIES, [r["checkpoint"] for r in with_gran])
        print()
        print(a.format("granularity (automatic) vs file, shares by checkpoint:"))
    if not with_lang and not with_gran:
        print("the file carries no labels: no agreement to report", file=sys.stderr)
    return 0
