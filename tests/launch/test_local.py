"""The toy study through ``launch --executor local`` (real subprocesses, 2 at a time) against
the sequential stages, and a job killed mid-way then relaunched."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from llmjp_ckpt.cli import main
from llmjp_ckpt.launch import load_launch
from llmjp_ckpt.launch.executors import launch
from llmjp_ckpt.launch.graph import Job
from llmjp_ckpt.launch.jobs import StageJob
from llmjp_ckpt.runfolder import sae_folders
from tests.launch_builders import toy_launch

pytestmark = pytest.mark.slow
KILLED = "train/iter_0000030/p0"
VOLATILE = {"updated", "seconds", "created", "run", "figures"}  # times, paths


class KillingJob(StageJob):
    """Dies by SIGKILL in job ``target`` once its SAEs are trained, before they are finalised
    (pickled by reference: the local subprocess imports this module)."""

    def __init__(self, target: str, flag: str):
        self.target, self.flag = target, flag

    def __call__(self, launch_cfg: Any, run: str, job: Job) -> Any:
        if job.name == self.target and not Path(self.flag).exists():
            Path(self.flag).touch()
            from llmjp_ckpt import atomic

            def die(*_a: Any, **_k: Any) -> None:
                os.kill(os.getpid(), signal.SIGKILL)

            atomic.replace_dir = die  # type: ignore[assignment]
        return super().__call__(launch_cfg, run, job)


@pytest.fixture(scope="module")
def cfg(toy_dir, tmp_path_factory) -> Path:
    return toy_launch(toy_dir, tmp_path_factory.mktemp("cfg"))


@pytest.fixture(scope="module")
def sequential(cfg, tmp_path_factory) -> Path:
    """The same study with the plain commands, one after the other."""
    run = tmp_path_factory.mktemp("sequential")
    lc = load_launch(cfg)
    for argv in (["prepare-data", "--config", lc.data], ["train", "--config", lc.train],
                 ["features", "--config", lc.features], ["compare", "--config", lc.compare]):
        assert main([*argv, "--run", str(run)]) == 0
    return run


def saes(run: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {f"{step}/{sid}": load_file(p / "sae_weights.safetensors")
            for step, sid, p in sae_folders(run)}


def assert_same_saes(a: Path, b: Path) -> None:
    sa, sb = saes(a), saes(b)
    assert sorted(sa) == sorted(sb) and len(sa) == 12
    for key in sa:
        for name, t in sa[key].items():
            assert torch.equal(t, sb[key][name]), f"{key} {name} differs"


def strip(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: strip(v) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, list):
        return [strip(v) for v in obj]
    return obj


def transitions(run: Path) -> Any:
    return strip(json.loads((run / "analysis" / "transitions.json").read_text()))


def test_local_two_at_a_time_equals_sequential(cfg, sequential, tmp_path, capsys):
    run = tmp_path / "launched"
    argv = ["launch", "--config", str(cfg), "--run", str(run), "--executor", "local",
            "--max-parallel", "2"]
    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    # two training processes were in flight together: two starts before the first train done
    events = [ln.split("] ")[1] for ln in out if ln.startswith("[launch] train/")]
    first_done = next(i for i, e in enumerate(events) if e.endswith(": done"))
    assert sum(e.split(": ")[1].startswith("started") for e in events[:first_done]) == 2
    assert_same_saes(sequential, run)
    assert transitions(run) == transitions(sequential)
    assert (run / "dashboards" / "index.html").is_file()
    for job in ("prepare-data", "train__iter_0000010__p0", "features", "site"):
        assert (run / "logs" / f"{job}.log").read_text().strip().endswith("done")
    assert main(argv) == 0  # relaunch: nothing left to run
    assert "every job is done; nothing to run" in capsys.readouterr().out


def test_killed_job_then_relaunch_runs_only_the_missing_work(cfg, sequential, tmp_path, capsys):
    run = tmp_path / "killed"
    lc = load_launch(cfg)
    lc = dataclasses.replace(lc, cluster=dataclasses.replace(lc.cluster, max_parallel=2))  # two cores: half the wait
    flag = tmp_path / "killed.flag"
    assert launch(lc, run, "local", job_fn=KillingJob(KILLED, str(flag))) == 1
    assert flag.exists()
    capsys.readouterr()
    assert main(["status", "--run", str(run)]) == 0
    status = capsys.readouterr().out
    line = next(ln for ln in status.splitlines() if ln.strip().startswith(KILLED))
    assert "failed" in line
    assert re.search(r"^\s+features\s+not started", status, re.MULTILINE), status
    assert status.strip().endswith(f"a relaunch would run: {KILLED}, features, compare, site")
    kept = {p: p.stat().st_ino for _, _, p in sae_folders(run)}
    assert len(kept) == 9  # 3 of the 4 checkpoints' SAEs were finalised

    assert launch(lc, run, "debug") == 0
    out = capsys.readouterr().out
    assert f"4 of 8 jobs to run on debug: {KILLED}, features, compare, site" in out
    assert {p: p.stat().st_ino for p in kept} == kept  # finished SAEs untouched
    assert_same_saes(sequential, run)
    assert transitions(run) == transitions(sequential)
