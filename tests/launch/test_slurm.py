"""SLURM without a cluster: submitit's own mocked ``sbatch``/``sacct`` (its test helper
``MockedSubprocess``) takes what a launch submits; the generated sbatch scripts and pickled
jobs are then read back. Nothing runs."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from submitit.core.test_core import MockedSubprocess
from submitit.core.utils import DelayedSubmission
from submitit.helpers import Checkpointable
from submitit.slurm import slurm

from llmjp_ckpt.cli import main
from llmjp_ckpt.launch.graph import SUBMITIT
from llmjp_ckpt.launch.jobs import StageJob
from tests.launch_builders import toy_launch

CLUSTER = {"partition": "gpu", "account": "proj", "gpus_per_job": 1, "cpus_per_job": 4,
           "time": "01:30:00", "max_parallel": 3, "sbatch": {"qos": "high"}}


@pytest.fixture
def mocked() -> Iterator[MockedSubprocess]:
    mock = MockedSubprocess(known_cmds=["srun", "sacct"])  # sinfo absent
    try:
        with mock.context():
            yield mock
    finally:
        slurm.SlurmJob.watcher.clear()


def sbatch_lines(run: Path, job_id: str) -> set[str]:
    job = slurm.SlurmJob(run / "logs" / SUBMITIT / "%j", job_id)
    return {ln.strip() for ln in job.paths.submission_file.read_text().splitlines()
            if ln.startswith("#SBATCH")}


def launched(run: Path) -> dict[str, str]:
    return json.loads((run / "logs" / "launch.json").read_text())["jobs"]


def test_graph_submitted_as_arrays_with_afterok_and_requeue(toy_dir, tmp_path, mocked, capsys):
    cfg = toy_launch(toy_dir, tmp_path / "cfg", **CLUSTER)
    run = tmp_path / "run"
    assert main(["launch", "--config", str(cfg), "--run", str(run), "--executor", "slurm"]) == 0
    ids = launched(run)
    trains = sorted(k for k in ids if k.startswith("train/"))
    assert len(trains) == 4  # 4 toy checkpoints x one pass of 3 SAEs
    arr = ids[trains[0]].split("_")[0]  # one array of 4 tasks
    assert sorted(ids[t] for t in trains) == [f"{arr}_{i}" for i in range(4)]
    common = {"#SBATCH --partition=gpu", "#SBATCH --account=proj", "#SBATCH --gpus-per-node=1",
              "#SBATCH --cpus-per-task=4", "#SBATCH --time=90", "#SBATCH --requeue",
              "#SBATCH --qos=high", "#SBATCH --signal=USR2@90"}
    data = sbatch_lines(run, ids["prepare-data"])
    assert common <= data and not any("dependency" in ln for ln in data)
    train = sbatch_lines(run, arr)
    assert common <= train
    assert "#SBATCH --array=0-3%3" in train
    assert f"#SBATCH --dependency=afterok:{ids['prepare-data']}" in train
    assert f"#SBATCH --dependency=afterok:{arr}" in sbatch_lines(run, ids["features"])
    assert f"#SBATCH --dependency=afterok:{ids['features']}" in sbatch_lines(run, ids["compare"])
    assert f"#SBATCH --dependency=afterok:{ids['compare']}" in sbatch_lines(run, ids["site"])
    # the pickled job is checkpointable: on timeout/preemption it requeues the same call
    task = slurm.SlurmJob(run / "logs" / SUBMITIT / "%j", ids[trains[2]])
    sub = DelayedSubmission.load(task.paths.submitted_pickle)
    assert isinstance(sub.function, StageJob) and isinstance(sub.function, Checkpointable)
    assert sub.args[2].name == trains[2] and sub.args[2].step == 100
    again = sub.function.checkpoint(*sub.args)
    assert isinstance(again, DelayedSubmission) and again.args[2] == sub.args[2]
    assert "submitted 8 jobs" in capsys.readouterr().out

    # the jobs are queued (sacct says RUNNING): a second launch stops, submits nothing
    before = mocked.job_count
    assert main(["launch", "--config", str(cfg), "--run", str(run), "--executor", "slurm"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "still queued or running" in err
    assert mocked.job_count == before
    assert main(["status", "--run", str(run)]) == 0
    out = capsys.readouterr().out
    assert f"{trains[0]}  running  SLURM job {arr}_0" in out, out


def test_warm_start_chains_one_array_per_checkpoint(toy_dir, tmp_path, mocked):
    cfg = toy_launch(toy_dir, tmp_path / "cfg", train={"warm_start": True}, **CLUSTER)
    run = tmp_path / "run"
    assert main(["launch", "--config", str(cfg), "--run", str(run), "--executor", "slurm"]) == 0
    ids = launched(run)
    arrays = [ids[k].split("_")[0] for k in sorted(k for k in ids if k.startswith("train/"))]
    assert len(set(arrays)) == 4  # one wave per checkpoint
    assert f"#SBATCH --dependency=afterok:{ids['prepare-data']}" in sbatch_lines(run, arrays[0])
    for prev, cur in itertools.pairwise(arrays):
        lines = sbatch_lines(run, cur)
        dep = next(ln for ln in lines if "dependency" in ln)
        assert set(dep.split("afterok:")[1].split(":")) == {ids["prepare-data"], prev}


@pytest.mark.parametrize(("args", "cluster", "expect"), [
    (["--executor", "pbs"], {}, "--executor 'pbs': expected one of local, slurm, debug"),
    (["--executor", "slurm"], {"partition": "gpu; rm -rf"}, "cluster.partition="),
    (["--executor", "slurm"], {"time": "25:99"}, "cluster.time='25:99'"),
    (["--executor", "slurm", "--time", "soon"], {}, "cluster.time='soon'"),
    (["--executor", "slurm"], {"time": 0}, "time=0"),
])
def test_bad_input_is_one_line_and_submits_nothing(toy_dir, tmp_path, mocked, capsys, args,
                                                   cluster, expect):
    cfg = toy_launch(toy_dir, tmp_path / "cfg", **cluster)
    run = tmp_path / "run"
    assert main(["launch", "--config", str(cfg), "--run", str(run), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expect in err, err
    assert mocked.job_count == 12 and not run.exists()  # no sbatch call, no folder


def test_a_run_folder_another_launch_holds_is_refused(toy_dir, tmp_path, mocked, capsys):
    from filelock import FileLock

    cfg = toy_launch(toy_dir, tmp_path / "cfg")
    run = tmp_path / "run"
    run.mkdir()
    with FileLock(str(run / ".launch.lock")):  # another launch, mid-way
        for executor in ("slurm", "local", "debug"):
            argv = ["launch", "--config", str(cfg), "--run", str(run), "--executor", executor]
            assert main(argv) == 2
            err = capsys.readouterr().err.strip()
            assert len(err.splitlines()) == 1 and "another launch holds this run folder" in err
    assert mocked.job_count == 12 and not (run / "logs").exists()


def test_status_of_a_run_never_launched_is_one_line(tmp_path, capsys):
    assert main(["status", "--run", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "never launched" in err
