"""The adapter at the real LLM-jp-3-1.8B width, and with the real LLM-jp tokenizer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from llmjp_ckpt import load_model
from tests.model_builders import TEXTS

SHARED_TOKENIZER = Path(__file__).resolve().parents[3] / "shared" / "data" / "llm-jp-tokenizer-100k.ver3.0b1.model"
REAL_WIDTH = {
    "hidden_size": 2048,
    "num_attention_heads": 16,
    "num_key_value_heads": 16,
    "intermediate_size": 7168,
    "num_hidden_layers": 2,
    "max_position_embeddings": 4096,
}
REAL_VOCAB = 99_584


def real_tokenizer():
    from transformers import LlamaTokenizer

    return LlamaTokenizer(vocab_file=str(SHARED_TOKENIZER), add_bos_token=True, add_eos_token=False, legacy=True)


def save_real_width(folder: Path, tokenizer=None) -> Path:
    from transformers import LlamaForCausalLM

    from tests.model_builders import build_llama_config

    torch.manual_seed(0)
    model = LlamaForCausalLM(build_llama_config(REAL_VOCAB, **REAL_WIDTH))
    model.save_pretrained(folder, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    return folder


needs_tokenizer = pytest.mark.skipif(
    not SHARED_TOKENIZER.exists(),
    reason="../shared/data/llm-jp-tokenizer-100k.ver3.0b1.model is absent",
)


@needs_tokenizer
def test_real_tokenizer_tokens_equal_bos_first(tmp_path):
    import sentencepiece as spm

    from tests.model_builders import build_checkpoints

    tok = real_tokenizer()
    root = build_checkpoints(
        tmp_path / "root",
        [10],
        tok,
        hidden_size=32,
        intermediate_size=64,
        num_attention_heads=2,
        num_key_value_heads=2,
    )
    model = load_model(root / "iter_0000010")
    sp = spm.SentencePieceProcessor(model_file=str(SHARED_TOKENIZER))
    assert model.cfg.d_vocab >= len(tok)
    for text in TEXTS + ["京都 Kyoto\n改行とdigits 12345"]:
        tl = model.to_tokens(text)[0].tolist()
        assert tl == tok(text)["input_ids"]
        assert tl[0] == tok.bos_token_id == sp.bos_id()
        assert tl[1:] == sp.encode(text)


MEM_SCRIPT = r"""
import gc, json, resource, sys, torch
import llmjp_ckpt
from transformers import LlamaForCausalLM
def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS")) * 1024
base = rss()
model = llmjp_ckpt.load_model(sys.argv[1])
gc.collect()
alive = sum(isinstance(o, LlamaForCausalLM) for o in gc.get_objects())
param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
print(json.dumps({"baseline": base, "after": rss(), "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "param_bytes": param_bytes, "hf_alive": alive}))
"""


@pytest.mark.slow
def test_real_width_parity_and_memory(tmp_path):
    from transformers import AutoModelForCausalLM

    from tests.model_builders import build_tokenizer

    tok = real_tokenizer() if SHARED_TOKENIZER.exists() else build_tokenizer(tmp_path / "tok")
    folder = save_real_width(tmp_path / "iter_0000010", tok)
    out = subprocess.run([sys.executable, "-c", MEM_SCRIPT, str(folder)], capture_output=True, text=True, check=True)
    mem = json.loads(out.stdout.strip().splitlines()[-1])
    print("memory (bytes):", mem)
    assert mem["hf_alive"] == 0
    # The HF copy is freed after conversion: what stays is about one copy of the weights.
    assert mem["after"] - mem["baseline"] < 1.25 * mem["param_bytes"]

    model = load_model(folder)
    assert (model.cfg.d_model, model.cfg.n_heads, model.cfg.d_mlp, model.cfg.d_vocab) == (2048, 16, 7168, REAL_VOCAB)
    assert not torch.equal(model.W_E, model.W_U.T)  # untied
    ids = model.to_tokens(TEXTS[0] + TEXTS[1])
    logits = model(ids)
    hf = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    with torch.no_grad():
        ref = hf(ids).logits
    assert (logits - ref).abs().max().item() <= 1e-4
