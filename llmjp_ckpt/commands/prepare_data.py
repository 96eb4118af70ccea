"""``llmjp-ckpt prepare-data``: corpus shards -> RUN/data/{train,val,test}/ windows."""

from __future__ import annotations

import argparse

HELP = "Tokenise the bilingual corpus into 65-token windows and save seeded train/val/test splits."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="configs/data/<name>.yaml")
    p.add_argument("--run", default="runs/default", help="run folder (RUN); the splits go to RUN/data/")
    p.add_argument("--force", action="store_true", help="rebuild even when done with the same config")


def run(args: argparse.Namespace) -> int:
    from llmjp_ckpt.config import read_json
    from llmjp_ckpt.data.corpus import INFO_FILE, as_config, prepare_data

    out = prepare_data(as_config(args.config), args.run, force=args.force)
    info = read_json(out / INFO_FILE)
    print(
        f"{out}: windows per split {info['windows_per_split']}"
        + (f"; SHORT: {info['shortfall']}" if info["shortfall"] else "")
    )
    return 0
