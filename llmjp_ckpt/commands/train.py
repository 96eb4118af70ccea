"""``llmjp-ckpt train``: TopK SAEs for every checkpoint of a training config, through SAELens."""

from __future__ import annotations

import argparse

HELP = "Train the SAEs of a config (paper / grid / demo) for each checkpoint; resumes and skips finished SAEs."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="configs/<paper|grid|demo>/<name>.yaml")
    p.add_argument("--run", default="runs/default", help="run folder (RUN) holding RUN/data/; SAEs go to RUN/saes/")
    p.add_argument("--report", action="store_true", help="also write the grid report (RUN/analysis/grid/)")


def run(args: argparse.Namespace) -> int:
    from llmjp_ckpt.saes.training import train_run

    done = train_run(args.config, args.run)
    for path in done:
        print(path)
    if args.report:
        from llmjp_ckpt.saes.grid import write_report

        print(write_report(args.run))
    return 0
