"""The job graph's train jobs: the memory planner's passes when ``cluster.gpu_memory`` is set."""

from __future__ import annotations

import pytest

from llmjp_ckpt.errors import UserError
from llmjp_ckpt.launch import load_launch
from llmjp_ckpt.launch.graph import plan
from llmjp_ckpt.saes.plan import parse_size
from llmjp_ckpt.saes.plan import plan as plan_passes
from llmjp_ckpt.saes.training import as_config
from tests.launch_builders import toy_launch


def train_jobs(cfg_path):
    return [j for j in plan(load_launch(cfg_path)) if j.kind == "train"]


def test_gpu_memory_makes_the_train_jobs_the_planners_passes(toy_dir, tmp_path):
    plain = train_jobs(toy_launch(toy_dir, tmp_path / "plain"))
    lc_path = toy_launch(toy_dir, tmp_path / "small", gpu_memory="15MiB")
    small = train_jobs(lc_path)
    steps = sorted({j.step for j in plain})
    # the toy's SAEs share one pass without a budget; 15 MiB fits one at a time
    assert len(plain) == len(steps)
    assert len(small) > len(plain)
    passes = plan_passes(as_config(load_launch(lc_path).train), parse_size("15MiB")).passes
    want = [tuple(s.sae_id for s in p.specs) for p in passes]
    for step in steps:
        assert [j.sae_ids for j in small if j.step == step] == want
    ids = sorted(i for j in small if j.step == steps[0] for i in j.sae_ids)
    assert ids == sorted(i for j in plain if j.step == steps[0] for i in j.sae_ids)


@pytest.mark.parametrize("value", ["lots", "-1GiB"])
def test_bad_gpu_memory_is_one_line(toy_dir, tmp_path, value):
    with pytest.raises(UserError, match=r"^cluster.gpu_memory="):
        load_launch(toy_launch(toy_dir, tmp_path, gpu_memory=value))
