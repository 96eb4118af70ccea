"""``llmjp-ckpt match``: one-to-one matching of two SAEs' features by decoder cosine."""

from __future__ import annotations

import argparse

HELP = ("Match the features of two SAE folders (SAELens format) by decoder cosine; writes one CSV "
        "row per feature of A and prints the shared fraction.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("sae_a", help="SAE folder A (cfg.json, sae_weights.safetensors)")
    p.add_argument("sae_b", help="SAE folder B, same hook and d_in as A")
    p.add_argument("--out", required=True,
                   help="CSV to write: feature_a, feature_b (empty unless shared), similarity "
                        "(cosine to the assigned partner), nearest_b, nearest_similarity, mutual_nn")
    p.add_argument("--threshold", type=float, default=None,
                   help="cosine at/above which a matched pair counts as shared (default 0.7)")
    p.add_argument("--method", choices=("auto", "sparse", "exact"), default="auto",
                   help="sparse candidate graph + auction, dense exact Hungarian, or auto by size")
    p.add_argument("--device", default="cpu",
                   help="where the similarity product runs: cpu, cuda, cuda:N (default cpu)")


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from llmjp_ckpt.compare.decoders import load_decoder
    from llmjp_ckpt.compare.matching import MatchConfig, match_decoders, write_matches_csv
    from llmjp_ckpt.devices import check_device

    cfg = MatchConfig(method=args.method, device=check_device(args.device))
    if args.threshold is not None:
        cfg = dataclasses.replace(cfg, threshold=args.threshold)
    # folders from elsewhere may lack firing counts: then every latent with a direction is live
    a, b = (load_decoder(x, require_counts=False) for x in (args.sae_a, args.sae_b))
    result = match_decoders(a, b, cfg)
    write_matches_csv(result, args.out)
    live = int(result.alive_a.sum())
    print(f"shared: {int(result.shared.sum())} of {live} live features of A "
          f"({result.shared_fraction:.1%}) at cosine ≥ {cfg.threshold}; "
          f"{int(result.mutual.sum())} mutual nearest neighbours; method {result.method}; "
          f"wrote {args.out}")
    if live == 0 or not result.alive_b.any():
        print("note: an SAE has no live features (all dead): nothing could be matched")
    return 0
