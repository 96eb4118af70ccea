"""``llmjp-ckpt compare``: matching, lineages and class transitions across a run's checkpoints."""

from __future__ import annotations

import argparse

HELP = ("Match each SAE to the next checkpoint's, follow lineages and class transitions; writes "
        "RUN/analysis/transitions.json, lineages and figures.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="run folder (with saes/ and analysis/features.parquet)")
    p.add_argument("--config", default=None, help="compare config YAML (e.g. configs/compare.yaml)")
    p.add_argument("--force", action="store_true", help="redo the stage even if recorded done")
    p.add_argument("--device", default=None,
                   help="where the matching's similarity product runs (default: the config's, cpu)")
    p.add_argument("--peer", default=None,
                   help="folder of imported peer SAEs, iter_XXXXXXX/<peer_id>/ (`import-peer --out`); "
                        "default: the config's peer_dir, else RUN/peer when it exists")


def run(args: argparse.Namespace) -> int:
    import logging

    from llmjp_ckpt.compare.stage import CompareConfig, compare_run

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = CompareConfig.from_yaml(args.config) if args.config else CompareConfig()
    if args.device is not None:
        import dataclasses

        cfg = dataclasses.replace(cfg, match=dataclasses.replace(cfg.match, device=args.device))
    if args.peer is not None:
        import dataclasses

        cfg = dataclasses.replace(cfg, peer_dir=args.peer)
    out = compare_run(args.run, cfg, force=args.force)
    if out.get("skipped"):
        print("compare: already done with this config (use --force to redo)")
    for note in out.get("notes", []):
        print(note)
    for sae_id, fam in out["families"].items():
        for p in fam["pairs"]:
            mo = p["mix_origins"]
            print(f"{sae_id} {p['from']}→{p['to']}: shared {p['shared']}/{p['live_a']} "
                  f"({p['shared_fraction']:.1%}), births {p['births']}, deaths {p['deaths']}, "
                  f"splits {p['splits']}, merges {p['merges']}; mix features {mo['n_mix']}: "
                  + ", ".join(f"{k} {v:.0%}" for k, v in mo["shares"].items()))
    for peer_id, entry in out.get("peers", {}).items():
        for r in entry["per_checkpoint"]:
            cos = r["median_cosine_found"]
            print(f"peer {peer_id} step {r['checkpoint']}: {r['sae_id']} finds {r['found']}/{r['peer_features']} "
                  f"({r['found_fraction']:.1%}) at cosine >= {entry['threshold']}"
                  + (f", median {cos:.3f}" if cos is not None else ""))
        for note in entry["notes"]:
            print(f"peer {peer_id}: {note}")
    from llmjp_ckpt.compare.layers import table_rows

    for r in table_rows(out.get("layers", {})):  # a layer sweep: language shares per layer and checkpoint
        print(f"{r['group']} L{r['layer']} step {r['checkpoint']}: language_paper {r['class']} {r['share']:.1%}")
    print(f"wrote {args.run}/analysis/transitions.json and {len(out['figures'])} figures")
    return 0
