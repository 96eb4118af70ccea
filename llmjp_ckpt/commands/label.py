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
                   help="feature examples: peer JSONL(.gz), a published per-feature JSON, "
                        "or a folder of them")
    p.add_argument("--out", help="CSV to write, one row per feature (required unless --manual)")
    p.add_argument("--language-rule", choices=["paper", "script"], default="script",
                   help="language rule for the 'language' column (default: script)")
    p.add_argument("--granularity", choices=["auto", "none"], default="auto",
                   help="auto: the rule classifier; none: leave the column empty")
    p.add_argument("--lexicon", metavar="FILE.tsv",
                   help="synonym/translation sets, one per line, tab-separated (granularity hook)")
    p.add_argument("--manual", metavar="LABELS.jsonl",
                   help="label granularity by hand in the terminal, appending to this JSONL "
                        "(resumable)")
    p.add_argument("--no-color", action="store_true",
                   help="manual mode: brackets instead of colours")
    p.add_argument("--fit", metavar="LABELS.jsonl",
                   help="refit the granularity thresholds on these labels (checkpoint, feature, "
                        "granularity; joined to --input's examples), report LOCO kappa")
    p.add_argument("--params-out", metavar="PARAMS.json",
                   help="with --fit: where to write the refit thresholds")


def run(args: argparse.Namespace) -> int:
    import sys

    from llmjp_ckpt.errors import UserError
    from llmjp_ckpt.labels.assign import agreement_report, label_records, write_rows_csv
    from llmjp_ckpt.labels.examples import load_records
    from llmjp_ckpt.labels.granularity import RuleBackend, classify
    from llmjp_ckpt.labels.lexical import load_lexicon

    records = load_records(args.input)
    if args.fit:
        from llmjp_ckpt.labels.evaluate import refit

        if not args.params_out:
            raise UserError("--params-out: expected a JSON path to write the refit thresholds")
        print(refit(records, args.fit, args.params_out))
        return 0
    backend = RuleBackend(lexicon=load_lexicon(args.lexicon)) if args.lexicon else None
    if args.manual:
        from llmjp_ckpt.labels.manual import label_interactively

        n = label_interactively(records, args.manual, color=False if args.no_color else None,
                                suggest=lambda ex: classify(ex, backend))
        print(f"{n} labels appended to {args.manual}")
        return 0
    if not args.out:
        raise UserError("--out: expected a CSV path (or use --manual LABELS.jsonl)")

    rows = label_records(records, language_rule=args.language_rule,
                         granularity=args.granularity == "auto", backend=backend)
    write_rows_csv(rows, args.out)
    print(f"wrote {len(rows)} features to {args.out}")
    report = agreement_report(rows, args.language_rule)
    if report is None:
        print("the file carries no labels: no agreement to report", file=sys.stderr)
    else:
        print(report)
    return 0
