"""``llmjp-ckpt toy``: make the toy world (corpus, tokenizer, tiny model and its checkpoints)."""

from __future__ import annotations

import argparse

HELP = "Generate the toy bilingual corpus, train a tiny LLM-jp-shaped model on it and save its checkpoints."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output folder (corpus/, tokenizer/, checkpoints/, toy.json ...)")
    p.add_argument("--quick", action="store_true", help="the small world the tests use (about a minute)")
    # A string, so that a bad value is one clear UserError line rather than argparse's usage dump.
    p.add_argument("--seed", default="0", help="non-negative integer seed (same seed, same bytes)")
    p.add_argument("--steps", default=None,
                   help="checkpoint schedule, comma-separated and strictly increasing (e.g. 10,30,100,300)")
    p.add_argument("--no-signals", action="store_true", help="skip measuring the learning signals")
    # A string, not argparse choices, so that a bad value is one UserError line (exit 2).
    p.add_argument("--tokenizer", default="sentencepiece",
                   help="sentencepiece (LLM-jp's kind, default) or byte-bpe (GPT-2 / OLMo kind)")


def parse_steps(text: str | None) -> tuple[int, ...] | None:
    """``"10,30,100"`` -> ``(10, 30, 100)``; a :class:`UserError` for anything else."""
    from llmjp_ckpt.errors import UserError

    if text is None:
        return None
    try:
        return tuple(int(s) for s in text.split(","))
    except ValueError:
        raise UserError(f"--steps {text!r}: expected comma-separated integers like 10,30,100") from None


def run(args: argparse.Namespace) -> int:
    import dataclasses
    from pathlib import Path

    from llmjp_ckpt.toy import default_config, make_toy, parse_seed, quick_config

    seed = parse_seed(args.seed)
    steps = parse_steps(args.steps)
    cfg = (quick_config if args.quick else default_config)(steps, tokenizer=args.tokenizer)
    if args.no_signals:
        cfg = dataclasses.replace(cfg, signals=False)
    info = make_toy(Path(args.out), quick=args.quick, seed=seed, config=cfg)
    log = Path(args.out) / "train_log.json"
    from llmjp_ckpt.config import read_json

    print(f"toy world in {args.out}: layer {info['layer']} ({info['hook']}), "
          f"{info['tokenizer']} tokenizer {info['tokenizer_size']} pieces, "
          f"model vocab {info['model_vocab_size']}")
    keys = ("parallel_acc", "mismatched_acc", "chance", "gloss_acc", "cross_gap", "variant_gap", "lang_gap")
    print(f"{'step':>6} {'loss':>7} " + " ".join(f"{k:>14}" for k in keys))
    for row in read_json(log)["checkpoints"]:
        sig = row.get("signals", {})
        print(f"{row['step']:>6} {row['loss']:>7.3f} " + " ".join(f"{sig.get(k, float('nan')):>14.3f}" for k in keys))
    return 0
