"""``llmjp-ckpt features``: top-N examples for every SAE latent, features.parquet and figures."""

from __future__ import annotations

import argparse

from llmjp_ckpt import devices

HELP = "Top-N windows of every SAE latent over the test split, labels; writes RUN/analysis/features.parquet, figures."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="run folder (with data/test and saes/)")
    p.add_argument(
        "--config",
        default=None,
        help="features config YAML (default: configs/features.yaml fields' defaults)",
    )
    p.add_argument("--model", default=None, help="model name or folder (default: from the SAEs' cfg.json)")
    p.add_argument("--checkpoint-root", default=None, help="folder holding iter_XXXXXXX checkpoints")
    p.add_argument(
        "--tokenizer",
        default=None,
        help="tokenizer .model file or folder for token text (default: the model's)",
    )
    devices.add_arguments(p)
    p.add_argument("--force", action="store_true", help="redo the stage even if recorded done")
    p.add_argument("--trust-pickle", action="store_true",
                   help="allow .bin/.pt model weights (unpickling runs code: trusted files only)")


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import logging

    from llmjp_ckpt.features.analyze import FeaturesConfig, analyze_run
    from llmjp_ckpt.tokens import TokenText

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = FeaturesConfig.from_yaml(args.config) if args.config else FeaturesConfig()
    overrides = {k: v for k, v in (("model", args.model), ("checkpoint_root", args.checkpoint_root),
                                   ("device", args.device), ("dtype", args.dtype)) if v is not None}
    if args.trust_pickle:
        overrides["trust_pickle"] = True
    cfg = dataclasses.replace(cfg, **overrides)
    tt = TokenText.load(args.tokenizer) if args.tokenizer else None
    out = analyze_run(args.run, cfg, token_text=tt, force=args.force)
    print(out)
    return 0
