"""What one job of the graph runs: the stage functions, with the job's log and state file.

:class:`StageJob` is what submitit pickles and runs (on a SLURM node, in a local subprocess or
in-process for ``debug``). It is a ``submitit.helpers.Checkpointable``: on a timeout or a
preemption submitit calls ``checkpoint`` and requeues the same call, which resumes from what
the run folder already holds (SAELens checkpoints under ``RUN/saes/_work/``, finished SAEs, the
stages' manifest entries).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from pathlib import Path
from typing import Any

import submitit

from llmjp_ckpt.launch.config import LaunchConfig
from llmjp_ckpt.launch.graph import Job, job_hash, log_path, read_state, write_state
from llmjp_ckpt.runfolder import SHARED_ENV


def run_job(launch: LaunchConfig, run: Path, job: Job) -> Any:
    """Run one job's stage function(s) into ``run``."""
    if job.kind == "data":
        from llmjp_ckpt.data.corpus import prepare_data

        return str(prepare_data(launch.data, run))
    if job.kind == "train":
        from llmjp_ckpt.saes import training as tr

        cfg = tr.as_config(launch.train)
        steps = tr.steps_of(cfg)
        out = tr.train_step(cfg, run, job.step, steps, tr._data_info(cfg, run), only=job.sae_ids,
                            memory=launch.cluster.gpu_memory)
        return [str(p) for p in out]
    if job.kind == "features":
        from llmjp_ckpt.features.analyze import FeaturesConfig, analyze_run
        from llmjp_ckpt.saes.training import train_run

        # Every SAE is finished by the train jobs, so this trains nothing: it records the train
        # stage in the manifest as a sequential `train` would (later stages and reruns read it).
        train_run(launch.train, run)
        cfg = FeaturesConfig.from_yaml(launch.features) if launch.features else FeaturesConfig()
        return str(analyze_run(run, cfg))
    if job.kind == "compare":
        from llmjp_ckpt.compare.stage import CompareConfig, compare_run

        cfg = CompareConfig.from_yaml(launch.compare) if launch.compare else CompareConfig()
        compare_run(run, cfg)
        return str(run / "analysis" / "transitions.json")
    if job.kind == "site":
        from llmjp_ckpt.site import SiteConfig, build_site

        cfg = SiteConfig.from_yaml(launch.site) if launch.site else SiteConfig()
        return str(build_site(run, cfg))
    raise ValueError(f"unknown job kind {job.kind!r}")


class StageJob(submitit.helpers.Checkpointable):
    """One graph job as submitit runs it; requeued whole on timeout or preemption."""

    def __call__(self, launch: LaunchConfig, run: str, job: Job) -> Any:
        root = Path(run)
        env_id = os.environ.get("SLURM_JOB_ID") or os.environ.get("SUBMITIT_LOCAL_JOB_ID")
        attempts = int(read_state(root, job).get("attempts", 0)) + 1
        write_state(root, job, "running", pid=os.getpid(), host=socket.gethostname(),
                    attempts=attempts, **({"env_job_id": env_id} if env_id else {}))
        old = os.environ.get(SHARED_ENV)
        os.environ[SHARED_ENV] = "1"  # the folder is shared: never clean others' temporaries
        log = log_path(root, job)
        handler = logging.FileHandler(log, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger = logging.getLogger()
        level = logger.level
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        try:
            with open(log, "a", encoding="utf-8") as fh, contextlib.redirect_stdout(fh), \
                    contextlib.redirect_stderr(fh):
                print(f"== {job.name}: attempt {attempts} on {socket.gethostname()} "
                      f"pid {os.getpid()}", flush=True)
                try:
                    result = run_job(launch, root, job)
                except Exception as exc:
                    import traceback

                    traceback.print_exc()
                    line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    print(f"{job.name} failed: {line}", flush=True)
                    write_state(root, job, "failed", error=line[:500], attempts=attempts)
                    raise
                print(f"{job.name} done", flush=True)
        finally:
            logger.removeHandler(handler)
            logger.setLevel(level)
            handler.close()
            if old is None:
                os.environ.pop(SHARED_ENV, None)
            else:
                os.environ[SHARED_ENV] = old
        write_state(root, job, "done", config_hash=job_hash(launch, job), attempts=attempts)
        return result
