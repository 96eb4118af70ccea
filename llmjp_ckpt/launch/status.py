"""What ``llmjp-ckpt status`` shows: every stage and job of the last launch, and what a relaunch
would run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmjp_ckpt.config import read_json
from llmjp_ckpt.errors import UserError
from llmjp_ckpt.launch.config import LaunchConfig, load_launch
from llmjp_ckpt.launch.graph import LAUNCH_FILE, LIVE, is_done, live_state, logs_dir, plan

CONFIG_COPY = "launch_config.yaml"  # the launch config a run was last launched with


def launch_config_of(run: str | Path, config: str | Path | None = None) -> LaunchConfig:
    """The given launch config, or the copy the last launch left in ``RUN/logs/``."""
    path = Path(config) if config else logs_dir(run) / CONFIG_COPY
    if not path.is_file():
        raise UserError(f"{run}: never launched (no {path}); pass --config FILE")
    return load_launch(path)


def status_rows(run: str | Path, launch: LaunchConfig) -> list[dict[str, Any]]:
    """One row per job: name, state, detail, and whether a relaunch would run it."""
    run = Path(run)
    jobs = plan(launch)
    rows, rerun = [], set()
    for job in jobs:
        state, detail = live_state(run, job)
        done = is_done(run, launch, job)
        if done and state not in LIVE:
            state = "done"
        if any(d in rerun for d in job.deps) or not done:
            rerun.add(job.name)
        rows.append({"job": job.name, "kind": job.kind, "state": state, "detail": detail,
                     "relaunch": job.name in rerun and state not in LIVE})
    return rows


def manifest_stages(run: str | Path) -> dict[str, Any]:
    p = Path(run) / "manifest.json"
    return read_json(p).get("stages", {}) if p.is_file() else {}


def last_launch(run: str | Path) -> dict[str, Any]:
    p = logs_dir(run) / LAUNCH_FILE
    return read_json(p) if p.is_file() else {}
