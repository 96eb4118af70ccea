"""The study as a job graph, and what each job's state is in a run folder.

Jobs: ``prepare-data`` -> one ``train/iter_XXXXXXX/pN`` per (checkpoint, activation pass) ->
``features`` ->
``compare`` -> ``site``. With ``cluster.gpu_memory`` the passes are the memory planner's
(``saes.plan``: what fits one job's GPU, the same packing the job's ``train_step`` then makes);
without it, the SAEs of one learning rate, at most ``max_saes_per_pass`` of them, and each job
plans its own device. Each job writes ``RUN/logs/<job>.log`` and ``RUN/logs/<job>.state.json``
(its own files only). What is *done* comes from the stages' own markers: the data stage's
manifest entry, each SAE's config hash (``saes.training.is_finished``), and for the later
stages the job's state file with the same config hash and nothing upstream to redo.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmjp_ckpt import atomic
from llmjp_ckpt.config import read_json
from llmjp_ckpt.errors import UserError
from llmjp_ckpt.launch.config import LaunchConfig
from llmjp_ckpt.runfolder import MANIFEST, config_hash, step_dir

LOGS = "logs"
SUBMITIT = "submitit"  # submitit's own pickles and stdout/stderr, under RUN/logs/
LAUNCH_FILE = "launch.json"  # the last launch: executor, job ids


@dataclass(frozen=True)
class Job:
    """One node of the graph."""

    name: str  # "prepare-data", "train/iter_0000010/p0", "features", "compare", "site"
    kind: str  # data | train | features | compare | site
    deps: tuple[str, ...] = ()
    step: int | None = None  # train: the checkpoint step
    sae_ids: tuple[str, ...] = ()  # train: the SAEs of this activation pass

    @property
    def slug(self) -> str:
        return self.name.replace("/", "__")


def logs_dir(run: str | Path) -> Path:
    return Path(run) / LOGS


def log_path(run: str | Path, job: Job) -> Path:
    return logs_dir(run) / f"{job.slug}.log"


def state_path(run: str | Path, job: Job) -> Path:
    return logs_dir(run) / f"{job.slug}.state.json"


def train_passes(cfg: Any, gpu_memory: str | None = None) -> list[list[Any]]:
    """The activation passes of one checkpoint: the planner's for ``gpu_memory``, else by lr, chunked."""
    if gpu_memory is not None:
        from llmjp_ckpt.saes.plan import parse_size
        from llmjp_ckpt.saes.plan import plan as plan_passes

        return [p.specs for p in plan_passes(cfg, parse_size(gpu_memory, "cluster.gpu_memory")).passes]
    specs = cfg.specs()
    by_lr: dict[float, list[Any]] = {}
    for s in specs:
        by_lr.setdefault(s.lr, []).append(s)
    size = cfg.max_saes_per_pass or len(specs)
    return [group[i:i + size] for group in by_lr.values() for i in range(0, len(group), size)]


def plan(launch: LaunchConfig) -> list[Job]:
    """Every job of the study in dependency order."""
    from llmjp_ckpt.saes.training import as_config, steps_of

    cfg = as_config(launch.train)
    steps = steps_of(cfg)
    passes = train_passes(cfg, launch.cluster.gpu_memory)
    jobs = [Job("prepare-data", "data")]
    train_names: list[str] = []
    for i, step in enumerate(steps):
        for p, specs in enumerate(passes):
            deps = ["prepare-data"]
            if cfg.warm_start and i:  # each SAE starts from the previous checkpoint's
                deps.append(f"train/{step_dir(steps[i - 1] or 0)}/p{p}")
            name = f"train/{step_dir(step or 0)}/p{p}"
            jobs.append(Job(name, "train", tuple(deps), step, tuple(s.sae_id for s in specs)))
            train_names.append(name)
    jobs.append(Job("features", "features", tuple(train_names)))
    jobs.append(Job("compare", "compare", ("features",)))
    jobs.append(Job("site", "site", ("compare",)))
    return jobs


def job_hash(launch: LaunchConfig, job: Job) -> str:
    """What a job's result depends on besides its inputs: its stage config file, its SAEs."""
    return config_hash({"kind": job.kind, "sae_ids": job.sae_ids, "step": job.step,
                        "config": launch.stage_file_text(job.kind)})


def read_state(run: str | Path, job: Job) -> dict[str, Any]:
    p = state_path(run, job)
    return read_json(p) if p.is_file() else {}


def write_state(run: str | Path, job: Job, state: str, **info: Any) -> None:
    """Record a job's state in its own file (one writer per file: no lock needed)."""
    old = read_state(run, job)
    entry = {k: v for k, v in old.items() if k in ("submitted", "job_id", "attempts")}
    entry |= {"job": job.name, "state": state, "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
              **info}
    atomic.write_json(state_path(run, job), entry)


def last_log_line(run: str | Path, job: Job) -> str:
    """The last non-empty line of the job's log ('' when none)."""
    p = log_path(run, job)
    if not p.is_file():
        return ""
    with p.open("rb") as fh:
        fh.seek(max(0, p.stat().st_size - 8192))
        lines = [ln.strip() for ln in fh.read().decode("utf-8", "replace").splitlines()]
    lines = [ln for ln in lines if ln]
    return lines[-1][:300] if lines else ""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


SLURM_LIVE = {"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED",
              "RESIZING", "REQUEUE_HOLD", "REQUEUE_FED"}
LIVE = ("running", "queued", "submitted")  # states of a job that a launch must not touch


def _slurm_state(run: str | Path, job_id: str) -> str | None:
    """SLURM's state of the job (``sacct`` through submitit), or None when it cannot be asked."""
    import shutil

    if shutil.which("sacct") is None:
        return None
    import submitit

    try:
        return str(submitit.SlurmJob(logs_dir(run) / SUBMITIT / "%j", job_id).state).upper()
    except Exception:  # noqa: BLE001 - sacct trouble: unknown, not fatal
        return None


def live_state(run: str | Path, job: Job) -> tuple[str, str]:
    """(state, detail) from the job's state file; a 'running' job whose process is gone failed."""
    st = read_state(run, job)
    state = st.get("state", "not started")
    if state == "failed":
        return "failed", st.get("error") or last_log_line(run, job)
    if state in ("running", "submitted"):
        if st.get("host") == socket.gethostname() and st.get("pid") and state == "running":
            if not _pid_alive(int(st["pid"])):
                return "failed", "process gone (killed?); log: " + last_log_line(run, job)
            return "running", f"pid {st['pid']}"
        if st.get("executor") == "slurm" and st.get("job_id"):
            sid = str(st["job_id"])
            sl = _slurm_state(run, sid)
            if sl is None:  # no sacct here: trust the state file
                return state, f"SLURM job {sid}"
            if sl in SLURM_LIVE:
                return ("queued" if sl == "PENDING" else "running"), f"SLURM job {sid}"
            return "failed", f"SLURM job {sid} {sl}; log: " + last_log_line(run, job)
        launcher = st.get("launcher_pid")
        if state == "submitted" and not (launcher and _pid_alive(int(launcher))):
            return "not started", "its launch ended first"
        return state, st.get("job_id", "")
    return state, ""


def _manifest_stage(run: Path, name: str) -> dict[str, Any]:
    p = run / MANIFEST
    return (read_json(p).get("stages", {}).get(name) or {}) if p.is_file() else {}


def is_done(run: str | Path, launch: LaunchConfig, job: Job) -> bool:
    """True when the job's own work is already in the run folder."""
    run = Path(run)
    if job.kind == "data":
        from llmjp_ckpt.data import corpus

        cfg = corpus.as_config(launch.data)
        rec = _manifest_stage(run, corpus.STAGE)  # read only: status must not clean temporaries
        return (rec.get("status") == "done" and rec.get("config_hash") == config_hash(cfg)
                and all((run / "data" / s).is_dir() for s in corpus.SPLITS))
    if job.kind == "train":
        from llmjp_ckpt.saes import training as tr

        cfg = tr.as_config(launch.train)
        try:
            data_info = tr._data_info(cfg, run)
        except UserError:
            return False
        by_id = {s.sae_id: s for s in cfg.specs()}
        return all(tr.is_finished(tr.sae_dir(run, job.step, by_id[i]),
                                  tr.spec_hash(cfg, job.step, by_id[i], data_info))
                   for i in job.sae_ids)
    st = read_state(run, job)
    return st.get("state") == "done" and st.get("config_hash") == job_hash(launch, job)


def to_run(run: str | Path, launch: LaunchConfig, jobs: list[Job]) -> list[Job]:
    """The jobs a launch would run now: not done, or downstream of one that runs."""
    names: set[str] = set()
    for job in jobs:  # dependency order
        if any(d in names for d in job.deps) or not is_done(run, launch, job):
            names.add(job.name)
    return [j for j in jobs if j.name in names]


def held_by(run: str | Path, jobs: list[Job]) -> str | None:
    """The first job of an earlier launch still queued or running, or None."""
    for job in jobs:
        state, detail = live_state(run, job)
        if state in LIVE:
            return f"{job.name} ({state}{', ' + detail if detail else ''})"
    return None
