"""The adapter: LLM-jp checkpoints as HookedTransformer models, equal to Hugging Face's."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import llmjp_ckpt
from llmjp_ckpt import UserError, load_model, study_layer_hook
from llmjp_ckpt.cli import main as cli_main
from llmjp_ckpt.resources import REGISTRY_ENV
from tests.model_builders import build_checkpoints, build_tokenizer, standin_registry

STEPS = [10, 100, 1000]
TEXT = "京都の猫は静かに眠る。The cat in Kyoto sleeps quietly. 犬 (dog)"


@pytest.fixture(scope="module")
def ckpt_root(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("ckpts")
    tok = build_tokenizer(base / "tok")
    return build_checkpoints(base / "iter_root", STEPS, tok)


@pytest.fixture(autouse=True, scope="module")
def _tiny_standin_for_the_1_8b(tmp_path_factory):
    """The tiny checkpoints stand in for llm-jp-3-1.8b: a registry entry without its shape."""
    from llmjp_ckpt.models import adapter

    mp = pytest.MonkeyPatch()
    mp.setenv(REGISTRY_ENV, str(standin_registry(tmp_path_factory.mktemp("standin"))))
    adapter.registry.cache_clear()
    yield
    mp.undo()
    adapter.registry.cache_clear()


def hf_logits(folder: Path, text: str) -> tuple[torch.Tensor, torch.Tensor]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    ids = torch.tensor([tok(text)["input_ids"]])
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    with torch.no_grad():
        return model(ids).logits, ids


def test_checkpoint_value_loads_each_step_equal_to_its_own_hf(ckpt_root, monkeypatch):
    from transformer_lens import HookedTransformer

    monkeypatch.setenv("LLMJP_CKPT_ROOT", str(ckpt_root))
    ref = {s: hf_logits(ckpt_root / f"iter_{s:07d}", TEXT) for s in STEPS}
    for step in STEPS:
        model = HookedTransformer.from_pretrained_no_processing("llm-jp/llm-jp-3-1.8b", checkpoint_value=step)
        assert model.cfg.checkpoint_value == step
        logits_hf, ids = ref[step]
        assert torch.equal(model.to_tokens(TEXT), ids)
        logits = model(ids)
        assert (logits - logits_hf).abs().max().item() <= 1e-4
        others = [s for s in STEPS if s != step]
        for o in others:  # equal to its own step, not another's
            assert (logits - ref[o][0]).abs().max().item() > 1e-2


def test_checkpoint_index_and_processing(ckpt_root, monkeypatch):
    from transformer_lens import HookedTransformer

    monkeypatch.setenv("LLMJP_CKPT_ROOT", str(ckpt_root))
    m = HookedTransformer.from_pretrained_no_processing("llm-jp/llm-jp-3-1.8b", checkpoint_index=1)
    assert m.cfg.checkpoint_value == 100
    processed = HookedTransformer.from_pretrained("llm-jp/llm-jp-3-1.8b", checkpoint_value=100)
    ids = m.to_tokens(TEXT)
    # Weight processing (folding, centring) keeps the output distribution.
    lp = torch.log_softmax(m(ids), -1)
    lq = torch.log_softmax(processed(ids), -1)
    assert (lp - lq).abs().max().item() < 1e-3


def test_load_model_local_folder_and_hook_parity(ckpt_root):
    from transformers import AutoModelForCausalLM

    folder = ckpt_root / "iter_0001000"
    model = load_model(folder)
    ids = model.to_tokens(TEXT)
    hf = AutoModelForCausalLM.from_pretrained(folder)
    with torch.no_grad():
        hs = hf(ids, output_hidden_states=True).hidden_states
    _, cache = model.run_with_cache(ids, names_filter=study_layer_hook(1))
    # The study's 1-based layer L is the output of block L: HF hidden_states[L] (for L below
    # the last layer: HF applies the final norm to its last hidden state).
    assert torch.allclose(cache[study_layer_hook(1)], hs[1], atol=1e-5)
    assert study_layer_hook(12) == "blocks.11.hook_resid_post"


def test_registered_name_with_step_via_load_model(ckpt_root):
    model = load_model("llm-jp/llm-jp-3-1.8b", 10, checkpoint_root=ckpt_root)
    logits_hf, ids = hf_logits(ckpt_root / "iter_0000010", TEXT)
    assert (model(ids) - logits_hf).abs().max().item() <= 1e-4


def test_path_containing_llama_still_loads(ckpt_root, tmp_path):
    folder = tmp_path / "my-llama-models" / "Llama-copy"
    shutil.copytree(ckpt_root / "iter_0000100", folder)
    model = load_model(folder)
    logits_hf, ids = hf_logits(folder, TEXT)
    assert (model(ids) - logits_hf).abs().max().item() <= 1e-4


def test_bos_prepended(ckpt_root):
    model = load_model(ckpt_root / "iter_0000010")
    assert model.to_tokens("猫").tolist()[0][0] == model.tokenizer.bos_token_id == 1


def test_rope_theta_is_respected(ckpt_root, tmp_path):
    folder = tmp_path / "theta"
    shutil.copytree(ckpt_root / "iter_0000010", folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["rope_theta"] = 500000.0
    (folder / "config.json").write_text(json.dumps(cfg))
    model = load_model(folder)
    assert model.cfg.rotary_base == 500000.0
    logits_hf, ids = hf_logits(folder, TEXT)
    assert (model(ids) - logits_hf).abs().max().item() <= 1e-4


# --- bad input: one clear line, exit code 2, nothing written --------------------------------


def _edit_config(src: Path, dst: Path, **changes) -> Path:
    shutil.copytree(src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    cfg.update(changes)
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


def bad_cases(root: Path, tmp: Path) -> dict[str, tuple[list[str], str]]:
    src = root / "iter_0000010"
    corrupt = tmp / "corrupt"
    shutil.copytree(src, corrupt)
    (corrupt / "config.json").write_text("{not json")
    nocfg = tmp / "nocfg"
    shutil.copytree(src, nocfg)
    (nocfg / "config.json").unlink()
    pickled = tmp / "pickled"
    shutil.copytree(src, pickled)
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    return {
        "root missing": (
            ["--checkpoint-root", str(tmp / "nowhere"), "llm-jp/llm-jp-3-1.8b", "--step", "10"],
            "does not exist",
        ),
        "step not there": (
            ["--checkpoint-root", str(root), "llm-jp/llm-jp-3-1.8b", "--step", "5"],
            "available steps are [10, 100, 1000]",
        ),
        "config missing": ([str(nocfg)], "config.json"),
        "config corrupt": ([str(corrupt)], "not valid UTF-8 JSON"),
        "not llama": (
            [
                str(
                    _edit_config(
                        src, tmp / "gpt2", model_type="gpt2", architectures=["GPT2LMHeadModel"]
                    )
                )
            ],
            "not a GPT2LMHeadModel config",
        ),
        "pickle only": ([str(pickled)], "pickle"),
        "rope scaling": (
            [str(_edit_config(src, tmp / "rope", rope_scaling={"type": "linear", "factor": 2.0}))],
            "rope_scaling",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "root missing",
        "step not there",
        "config missing",
        "config corrupt",
        "not llama",
        "pickle only",
        "rope scaling",
    ],
)
def test_bad_input_one_line_exit_2(case, ckpt_root, tmp_path, capsys):
    args, needle = bad_cases(ckpt_root, tmp_path)[case]
    before = sorted(p for p in tmp_path.rglob("*"))
    code = cli_main(["inspect", *args])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and needle in err, err
    assert sorted(p for p in tmp_path.rglob("*")) == before  # nothing written


def test_pickle_loads_only_with_trust_flag(ckpt_root, tmp_path):
    src = ckpt_root / "iter_0000010"
    pickled = tmp_path / "pickled"
    shutil.copytree(src, pickled)
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(src).save_pretrained(pickled, safe_serialization=False)
    (pickled / "model.safetensors").unlink()
    with pytest.raises(UserError, match="pickle"):
        load_model(pickled)
    model = load_model(pickled, trust_pickle=True)
    logits_hf, ids = hf_logits(src, TEXT)
    assert (model(ids) - logits_hf).abs().max().item() <= 1e-4


def test_checkpoints_command_lists_steps(ckpt_root, capsys, monkeypatch):
    monkeypatch.setenv("LLMJP_CKPT_ROOT", str(ckpt_root))
    assert cli_main(["checkpoints"]) == 0
    out = capsys.readouterr().out
    assert "llm-jp/llm-jp-3-1.8b" in out and "iter_0001000" in out
    assert "988240" in out  # registered but not on disk: shown as missing
    assert llmjp_ckpt.__version__
