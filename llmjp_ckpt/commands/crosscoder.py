"""``llmjp-ckpt crosscoder``: one crosscoder over a run's checkpoints, and what it says."""

from __future__ import annotations

import argparse

HELP = "Train one crosscoder over the run's checkpoints; writes RUN/crosscoders/ and RUN/analysis/crosscoder.json."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="run folder with data/ and saes/")
    p.add_argument("--config", default=None, help="crosscoder YAML (e.g. configs/crosscoder/toy.yaml)")
    p.add_argument("--force", action="store_true", help="redo the stage even if recorded done")


def run(args: argparse.Namespace) -> int:
    import logging

    from llmjp_ckpt.crosscoders.stage import crosscoder_run, load_config

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = crosscoder_run(args.run, load_config(args.config), force=args.force)
    print(f"crosscoder over steps {out['steps']}: {out['classes']}; births {out['births']}")
    for sae_id, agr in out.get("lineage_agreement", {}).items():
        print(f"  vs {sae_id} lineages: {agr['nearest_latent_rises']} of {agr['chains_born_later']} "
              "later-born chains have a crosscoder latent rising at their birth")
    for r in out.get("labels", {}).get("per_checkpoint", []):  # latent labels (crosscoders.labels)
        shares = ", ".join(f"{k} {v:.0%}" for k, v in r.items() if "=" in k)
        print(f"  step {r['checkpoint']}: {r['present']} latents present, {r['labelled']} labelled: {shares}")
    births = out.get("labels", {}).get("planted", {}).get("births")
    if births:
        print(f"  planted: {births['present_from_matches_timeline']} of {births['with_timeline_step']} "
              "translation latents present from the timeline's step for their concept")
    return 0
