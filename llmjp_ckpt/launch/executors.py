"""Running the job graph: SLURM (job arrays and ``afterok`` dependencies), local processes N at
a time, or in-process (``debug``), all through submitit.

A launch holds ``RUN/.launch.lock`` while it submits (``local`` and ``debug``: until the graph
ends); a second launch on the same run folder, or one while jobs of an earlier launch are still
queued or running, stops with one line before submitting anything.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import submitit
import yaml
from filelock import FileLock, Timeout

from llmjp_ckpt import atomic
from llmjp_ckpt.errors import UserError
from llmjp_ckpt.launch.config import EXECUTORS, LaunchConfig, check_partition
from llmjp_ckpt.launch.graph import (
    LAUNCH_FILE,
    SUBMITIT,
    Job,
    held_by,
    logs_dir,
    plan,
    to_run,
    write_state,
)
from llmjp_ckpt.launch.jobs import StageJob
from llmjp_ckpt.launch.status import CONFIG_COPY
from llmjp_ckpt.runfolder import RunFolder

LOCK = ".launch.lock"
POLL_S = 0.5


def check_executor(executor: str) -> None:
    if executor not in EXECUTORS:
        raise UserError(f"--executor {executor!r}: expected one of {', '.join(EXECUTORS)}")


def executor_for(kind: str, launch: LaunchConfig, run: Path) -> submitit.Executor:
    """A submitit executor with the cluster section's settings."""
    cl = launch.cluster
    folder = logs_dir(run) / SUBMITIT / "%j"
    params: dict[str, Any] = {"timeout_min": cl.timeout_min, "cpus_per_task": cl.cpus_per_job,
                              "gpus_per_node": cl.gpus_per_job}
    if kind == "local":  # LocalExecutor itself: its visible_gpus is set per job (AutoExecutor
        # accepts no local-only parameter but setup)
        local = submitit.LocalExecutor(folder=folder, max_num_timeout=cl.max_requeues)
        local.update_parameters(**params, **({"setup": list(cl.setup)} if cl.setup else {}))
        return local
    ex = submitit.AutoExecutor(folder=folder, cluster=kind, slurm_max_num_timeout=cl.max_requeues)
    if kind == "slurm":
        params |= {"slurm_array_parallelism": cl.max_parallel, "slurm_setup": list(cl.setup),
                   "slurm_additional_parameters": sbatch_options(launch)}
        if cl.partition:
            params["slurm_partition"] = cl.partition
        if cl.account:
            params["slurm_account"] = cl.account
        if cl.mem_gb:
            params["mem_gb"] = float(cl.mem_gb)
    ex.update_parameters(**params)
    return ex


def sbatch_options(launch: LaunchConfig, dependency: str | None = None) -> dict[str, Any]:
    """Extra ``#SBATCH`` lines: the config's own, ``--requeue`` (preempted jobs come back)."""
    out: dict[str, Any] = {"requeue": True, **launch.cluster.sbatch}
    if dependency:
        out["dependency"] = dependency
    return out


def launch(launch_cfg: LaunchConfig, run: str | Path, executor: str, *,
           job_fn: Callable[..., Any] | None = None, echo: Callable[[str], None] = print) -> int:
    """Run (local, debug) or submit (slurm) what the graph still needs; 0 when it all went well."""
    check_executor(executor)
    if executor == "slurm":
        check_partition(launch_cfg.cluster)
    run = Path(run).resolve()
    jobs = plan(launch_cfg)  # configs are read and checked here, before any lock or job
    run.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(run / LOCK))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise UserError(f"{run}: another launch holds this run folder ({run / LOCK}); "
                        f"see `llmjp-ckpt status --run {run}`") from None
    try:
        busy = held_by(run, jobs)
        if busy:
            raise UserError(f"{run}: jobs of an earlier launch are still queued or running "
                            f"({busy}); see `llmjp-ckpt status --run {run}`")
        RunFolder(run)  # cleans leftovers of killed writes once, while nothing else runs
        atomic.write_text(logs_dir(run) / CONFIG_COPY,  # what `status` reads later
                          yaml.safe_dump(dataclasses.asdict(launch_cfg), sort_keys=False))
        todo = to_run(run, launch_cfg, jobs)
        if not todo:
            echo(f"{run}: every job is done; nothing to run")
            return 0
        echo(f"{run}: {len(todo)} of {len(jobs)} jobs to run on {executor}: "
             + ", ".join(j.name for j in todo))
        fn = job_fn or StageJob()
        if executor == "slurm":
            return submit_slurm(launch_cfg, run, todo, fn, echo)
        parallel = 1 if executor == "debug" else launch_cfg.cluster.max_parallel
        return run_here(launch_cfg, run, todo, fn, executor, parallel, echo)
    finally:
        lock.release()


def _record_launch(run: Path, executor: str, ids: dict[str, str]) -> None:
    atomic.write_json(logs_dir(run) / LAUNCH_FILE, {
        "executor": executor, "launcher_pid": os.getpid(), "jobs": ids,
        "submitted": time.strftime("%Y-%m-%dT%H:%M:%S")})


def run_here(launch_cfg: LaunchConfig, run: Path, todo: list[Job], fn: Callable[..., Any],
             kind: str, parallel: int, echo: Callable[[str], None]) -> int:
    """The graph on this machine: each job starts when its inputs are done, ``parallel`` at a
    time (submitit's local executor has no dependencies, so this loop plays the scheduler)."""
    ex = executor_for(kind, launch_cfg, run)
    gpus = _local_gpus(launch_cfg) if kind == "local" else []
    per_job = launch_cfg.cluster.gpus_per_job if gpus else 0
    if per_job:
        parallel = max(1, min(parallel, len(gpus) // per_job))
    names = {j.name for j in todo}
    pending = list(todo)
    running: dict[str, tuple[Any, list[int]]] = {}
    done: set[str] = set()
    failed: set[str] = set()
    free = list(gpus)
    for job in todo:
        write_state(run, job, "submitted", executor=kind, launcher_pid=os.getpid())
    _record_launch(run, kind, {})
    try:
        while pending or running:
            for job in list(pending):
                waiting = [d for d in job.deps if d in names and d not in done]
                if any(d in failed for d in job.deps):
                    pending.remove(job)
                    failed.add(job.name)
                    write_state(run, job, "not started", reason="an input job failed")
                    echo(f"[launch] {job.name}: not started (an input failed)")
                elif not waiting and len(running) < parallel:
                    devices, free = free[:per_job], free[per_job:]
                    if per_job:
                        ex.update_parameters(visible_gpus=devices)
                    sj = ex.submit(fn, launch_cfg, str(run), job)
                    if kind == "debug":
                        err = sj.exception()  # runs it now; exception() skips debug's pdb
                        _finish(run, job, err, done, failed, echo)
                        pending.remove(job)
                        continue
                    write_state(run, job, "submitted", executor=kind, job_id=str(sj.job_id),
                                launcher_pid=os.getpid())
                    running[job.name] = (sj, devices)
                    pending.remove(job)
                    echo(f"[launch] {job.name}: started (process {sj.job_id})")
            for name, (sj, devices) in list(running.items()):
                if sj.done():
                    del running[name]
                    free += devices
                    job = next(j for j in todo if j.name == name)
                    try:
                        err = sj.exception()
                    except Exception as exc:  # noqa: BLE001 - killed: no result pickle at all
                        err = exc
                    _finish(run, job, err, done, failed, echo)
            if running:
                time.sleep(POLL_S)
    except KeyboardInterrupt:
        for sj, _ in running.values():
            sj.cancel(check=False)
        raise
    if failed:
        echo(f"[launch] {len(done)} done, {len(failed)} failed or not started; "
             "fix and rerun the same command to run only what is missing")
        return 1
    echo(f"[launch] all {len(done)} jobs done")
    return 0


def _finish(run: Path, job: Job, err: BaseException | None, done: set[str], failed: set[str],
            echo: Callable[[str], None]) -> None:
    from llmjp_ckpt.launch.graph import last_log_line, read_state

    if err is None:
        done.add(job.name)
        echo(f"[launch] {job.name}: done")
        return
    failed.add(job.name)
    st = read_state(run, job)
    if st.get("state") != "failed":  # killed before it could say so
        write_state(run, job, "failed", error=f"process ended: {str(err).splitlines()[0][:300]}"
                    if str(err) else "process ended")
    echo(f"[launch] {job.name}: FAILED: {last_log_line(run, job)}")


def _local_gpus(launch_cfg: LaunchConfig) -> list[int]:
    """Visible GPU indices when jobs ask for GPUs (none on a CPU machine)."""
    if launch_cfg.cluster.gpus_per_job == 0:
        return []
    try:
        import torch

        return list(range(torch.cuda.device_count()))
    except Exception:  # noqa: BLE001 - no usable CUDA: CPU jobs
        return []


def submit_slurm(launch_cfg: LaunchConfig, run: Path, todo: list[Job], fn: Callable[..., Any],
                 echo: Callable[[str], None]) -> int:
    """Submit the graph: training passes as job arrays (one per checkpoint when SAEs warm-start
    from the previous checkpoint, else one), each later job ``afterok`` on its inputs."""
    ex = executor_for("slurm", launch_cfg, run)
    ids: dict[str, str] = {}  # job name -> SLURM id (array tasks: ARRAY_TASK)
    array_of: dict[str, str] = {}  # job name -> the id to depend on (array: the array id)

    def deps_of(job: Job) -> str | None:
        got = sorted({array_of[d] for d in job.deps if d in array_of})
        return "afterok:" + ":".join(got) if got else None

    def record(job: Job, sj: Any) -> None:
        ids[job.name] = str(sj.job_id)
        array_of[job.name] = str(sj.job_id).split("_")[0]
        write_state(run, job, "submitted", executor="slurm", job_id=str(sj.job_id))

    def submit(job: Job) -> None:
        ex.update_parameters(name=f"llmjp-{job.kind}", slurm_additional_parameters=sbatch_options(
            launch_cfg, deps_of(job)))
        sj = ex.submit(fn, launch_cfg, str(run), job)
        record(job, sj)
        echo(f"[launch] {job.name}: SLURM job {sj.job_id}")

    for job in todo:
        if job.kind == "data":
            submit(job)
    train = [j for j in todo if j.kind == "train"]
    waves: list[list[Job]] = []
    for job in train:  # a wave: jobs whose train inputs are in earlier waves
        wave = max((i + 1 for i, w in enumerate(waves) for d in job.deps
                    if any(x.name == d for x in w)), default=0)
        if wave == len(waves):
            waves.append([])
        waves[wave].append(job)
    for i, wave in enumerate(waves):
        # an array's tasks share one dependency line: the union of its jobs' inputs
        merged = Job(wave[0].name, "train", tuple(sorted({d for j in wave for d in j.deps})))
        ex.update_parameters(name=f"llmjp-train-{i}", slurm_additional_parameters=sbatch_options(
            launch_cfg, deps_of(merged)))
        sjs = ex.map_array(fn, [launch_cfg] * len(wave), [str(run)] * len(wave), wave)
        for job, sj in zip(wave, sjs, strict=True):
            record(job, sj)
        echo(f"[launch] train wave {i}: SLURM array {array_of[wave[0].name]} of {len(sjs)} jobs")
    for job in todo:
        if job.kind in ("features", "compare", "site"):
            submit(job)
    _record_launch(run, "slurm", ids)
    echo(f"[launch] submitted {len(ids)} jobs; follow them with `llmjp-ckpt status --run {run}`")
    return 0
