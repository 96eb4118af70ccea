"""``llmjp-ckpt launch``: the study as a job graph on SLURM or local processes (submitit)."""

from __future__ import annotations

import argparse

HELP = ("Run the study as a job graph (prepare-data -> one training job per checkpoint and "
        "activation pass -> features -> compare -> site) on SLURM, local processes or in-process.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True,
                   help="launch YAML naming the stage configs + a cluster: section "
                        "(configs/launch/<name>.yaml)")
    p.add_argument("--run", required=True, help="run folder (RUN); job logs go to RUN/logs/")
    p.add_argument("--executor", default="local",
                   help="slurm (sbatch, job arrays, afterok dependencies), local (subprocesses, "
                        "N at a time) or debug (in-process, one at a time); default local")
    p.add_argument("--max-parallel", type=int, default=None,
                   help="jobs at a time (local) / array tasks at a time (slurm); "
                        "default: the config's cluster.max_parallel")
    p.add_argument("--partition", default=None, help="override cluster.partition")
    p.add_argument("--time", default=None, help="override cluster.time, e.g. 12:00:00")


def run(args: argparse.Namespace) -> int:
    from llmjp_ckpt.launch.config import load_launch, replace_cluster
    from llmjp_ckpt.launch.executors import check_executor, launch

    check_executor(args.executor)  # before reading anything
    cfg = load_launch(args.config)
    changes = {k: v for k, v in (("max_parallel", args.max_parallel),
                                 ("partition", args.partition), ("time", args.time))
               if v is not None}
    if changes:
        cfg = replace_cluster(cfg, **changes)
    return launch(cfg, args.run, args.executor, echo=lambda s: print(s, flush=True))
