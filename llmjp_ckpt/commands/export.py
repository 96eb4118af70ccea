"""``llmjp-ckpt export neuronpedia``: sae-dashboard's Neuronpedia files for every SAE of a run."""

from __future__ import annotations

import argparse

HELP = ("Export every SAE of a run for Neuronpedia (sae-dashboard's batch-*.json feature files, "
        "token text readable: no ▁, no <0x..>).")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", choices=["neuronpedia"], help="export format")
    p.add_argument("--run", required=True, help="run folder (RUN) with saes/ and data/test/")
    p.add_argument("--out", default=None, help="output folder (default: RUN/exports/neuronpedia)")
    p.add_argument("--tokenizer", default=None,
                   help="tokenizer folder or .model file (default: the data stage's tokenizer)")
    p.add_argument("--features-per-file", type=int, default=128,
                   help="features per batch-<N>.json file")
    p.add_argument("--max-windows", type=int, default=None,
                   help="test windows to draw examples from (default: all)")
    p.add_argument("--device", default="cpu", help="device for the model and the SAEs")
    p.add_argument("--force", action="store_true", help="rerun even if the manifest says current")


def run(args: argparse.Namespace) -> int:
    from llmjp_ckpt.hub.neuronpedia import NeuronpediaExportConfig, export_neuronpedia
    from llmjp_ckpt.tokens import TokenText

    cfg = NeuronpediaExportConfig(n_features_at_a_time=args.features_per_file,
                                  max_windows=args.max_windows, device=args.device)
    tt = TokenText.load(args.tokenizer) if args.tokenizer else None
    print(export_neuronpedia(args.run, args.out, cfg, token_text=tt, force=args.force))
    return 0
