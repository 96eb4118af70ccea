"""Atomic writes and the run folder's manifest."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from typing import Any

import pytest

from llmjp_ckpt import atomic
from llmjp_ckpt.runfolder import RunFolder, config_hash, step_dir


def _mask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_write_is_atomic_and_readable_by_others(tmp_path):
    p = atomic.write_json(tmp_path / "sub" / "a.json", {"京都": 1})
    assert json.loads(p.read_text(encoding="utf-8")) == {"京都": 1}
    assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~_mask()
    assert [q.name for q in p.parent.iterdir()] == ["a.json"]


def test_failed_write_leaves_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = atomic.write_text(tmp_path / "a.txt", "old")

    def boom(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError):
        atomic.write_text(target, "new")
    assert target.read_text() == "old"
    assert sorted(q.name for q in tmp_path.iterdir()) == ["a.txt"]


def test_atomic_dir_appears_whole_or_not_at_all(tmp_path):
    with pytest.raises(RuntimeError), atomic.atomic_dir(tmp_path / "sae") as d:
        (d / "cfg.json").write_text("{}")
        raise RuntimeError("crash mid-save")
    assert list(tmp_path.iterdir()) == []
    with atomic.atomic_dir(tmp_path / "sae") as d:
        (d / "cfg.json").write_text("{}")
    assert (tmp_path / "sae" / "cfg.json").exists()
    assert stat.S_IMODE((tmp_path / "sae").stat().st_mode) == 0o777 & ~_mask()
    with atomic.atomic_dir(tmp_path / "sae") as d:  # replaces the old folder whole
        (d / "other").write_text("x")
    assert sorted(q.name for q in (tmp_path / "sae").iterdir()) == ["other"]


def test_opening_a_run_removes_leftover_temporaries(tmp_path):
    (tmp_path / ".tmp-sae.abc").mkdir()
    (tmp_path / "saes").mkdir()
    (tmp_path / "saes" / ".tmp-metrics.json.x").write_text("half")
    RunFolder(tmp_path)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["saes"]


@dataclass
class Cfg:
    lr: float = 1e-3
    k: int = 32


def test_manifest_records_and_skips_only_same_config(tmp_path):
    run = RunFolder(tmp_path)
    assert not run.is_done("train", Cfg())
    run.record("train", Cfg(), "running")
    assert not run.is_done("train", Cfg())
    run.record("train", Cfg(), "done", steps=[10, 100])
    assert run.is_done("train", Cfg())
    assert not run.is_done("train", Cfg(k=16))
    st = RunFolder(tmp_path).stage_record("train")
    assert st["config"] == {"lr": 1e-3, "k": 32} and st["steps"] == [10, 100]
    assert st["versions"]["sae-lens"] != "not installed"
    assert config_hash(Cfg()) == config_hash({"k": 32, "lr": 1e-3})


def test_step_dir_is_the_studys_name():
    assert step_dir(10) == "iter_0000010" and step_dir(988240) == "iter_0988240"


def _record_many(root: str, worker: int, n: int, barrier: Any) -> None:
    """One of the concurrent writers: its own stage names, recorded ``n`` times each."""
    os.environ["LLMJP_CKPT_SHARED_RUN"] = "1"  # as a launched job: no cleaning of others' files
    run = RunFolder(root)
    barrier.wait()
    for i in range(n):
        run.record(f"w{worker}-s{i % 5}", {"worker": worker, "i": i}, "done", i=i)


def test_concurrent_writers_lose_no_manifest_entry(tmp_path):
    """8 processes recording at once: every stage of every process ends in the manifest, each
    with its last write. Without the lock, read-modify-write races drop entries."""
    import multiprocessing as mp

    # fork: the writers start from this process's imports (a spawned one re-imports torch and
    # TransformerLens through llmjp_ckpt, ~5 s of CPU each); the race is the same
    ctx = mp.get_context("fork")
    n_proc, n = 8, 15
    barrier = ctx.Barrier(n_proc)
    procs = [ctx.Process(target=_record_many, args=(str(tmp_path), w, n, barrier))
             for w in range(n_proc)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0] * n_proc
    stages = RunFolder(tmp_path).manifest()["stages"]
    assert sorted(stages) == sorted(f"w{w}-s{s}" for w in range(n_proc) for s in range(5))
    for name, st in stages.items():  # each entry is the worker's last write of that stage
        assert st["i"] == max(i for i in range(n) if f"s{i % 5}" == name.split("-")[1])


def test_a_shared_run_folder_keeps_other_writers_temporaries(tmp_path, monkeypatch):
    (tmp_path / "saes").mkdir()
    tmp = tmp_path / "saes" / ".tmp-sae.abc"
    tmp.mkdir()
    monkeypatch.setenv("LLMJP_CKPT_SHARED_RUN", "1")
    RunFolder(tmp_path)  # a job opening the folder while another job writes into it
    assert tmp.is_dir()
    monkeypatch.delenv("LLMJP_CKPT_SHARED_RUN")
    RunFolder(tmp_path)  # alone (the launch, or a sequential command): leftovers go
    assert not tmp.exists()
