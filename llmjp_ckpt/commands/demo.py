"""``llmjp-ckpt demo``: the whole pipeline on the project's tiny bilingual world."""

from __future__ import annotations

import argparse

HELP = "Run the whole pipeline on the toy world (toy -> data -> SAEs -> features -> compare -> site); resumable."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/demo", help="run folder (default: runs/demo); rerunning resumes")
    p.add_argument("--quick", action="store_true", help="a smaller world and shorter training (a few minutes)")
    p.add_argument("--seed", default="0", help="seed of the toy world (a non-negative integer)")
    p.add_argument("--tokenizer", default="sentencepiece",
                   help="the toy's tokenizer: sentencepiece (LLM-jp's) or byte-bpe (GPT-2's kind)")


def run(args: argparse.Namespace) -> int:
    import logging

    from llmjp_ckpt.demo import run_demo
    from llmjp_ckpt.toy import parse_seed

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("llmjp_ckpt").setLevel(logging.INFO)  # our stages' lines, not every library's
    from llmjp_ckpt.toy.tokenizer import check_kind

    index = run_demo(args.out, quick=args.quick, seed=parse_seed(args.seed),
                     tokenizer=check_kind(args.tokenizer))
    print(f"open {index.resolve()}")
    return 0
