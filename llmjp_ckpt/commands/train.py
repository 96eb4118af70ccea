"""``llmjp-ckpt train``: TopK SAEs for every checkpoint of a training config, through SAELens."""

from __future__ import annotations

import argparse

from llmjp_ckpt import devices

HELP = "Train the SAEs of a config (paper / grid / demo) for each checkpoint; resumes and skips finished SAEs."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="configs/<paper|grid|demo>/<name>.yaml")
    p.add_argument("--run", default="runs/default", help="run folder (RUN) holding RUN/data/; SAEs go to RUN/saes/")
    p.add_argument("--report", action="store_true", help="also write the grid report (RUN/analysis/grid/)")
    p.add_argument("--trust-pickle", action="store_true",
                   help="allow .bin/.pt model weights (unpickling runs code: trusted files only)")
    devices.add_arguments(p, sae_autocast=True)
    p.add_argument("--device-memory", default=None,
                   help="memory the plan may fill, e.g. 80GiB or 141GB (default: the device's free memory)")


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from llmjp_ckpt.saes.config import TrainConfig
    from llmjp_ckpt.saes.training import train_run

    cfg = TrainConfig.from_yaml(args.config)
    if args.trust_pickle:  # the flag only widens what the config allows
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, trust_pickle=True))
    if devices.overrides(args):
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, **devices.overrides(args)))
    from llmjp_ckpt.commands.plan import print_plan

    print_plan(cfg, args.device_memory)  # the planned passes; a pass that cannot fit: exit 2 here
    done = train_run(cfg, args.run, device_memory=args.device_memory)
    for path in done:
        print(path)
    if args.report:
        from llmjp_ckpt.saes.grid import write_report

        print(write_report(args.run))
    return 0
