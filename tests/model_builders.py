"""Tiny builders for adapter tests: an LLM-jp-shaped tokenizer and Llama checkpoints on disk."""

from __future__ import annotations

import random
from pathlib import Path

import torch

TEXTS = [
    "京都の猫は静かに眠る。The cat in Kyoto sleeps quietly.",
    "犬 (dog) は公園で走る。A dog runs in the park.",
    "赤いりんごを食べました。I ate a red apple.",
    "東京タワーは高い。Tokyo Tower is tall.",
    "ネコとイヌは友達です。Cats and dogs are friends.",
]


def build_tokenizer(out: Path, vocab_size: int = 420):
    """A SentencePiece Unigram tokenizer with byte fallback, saved as HF files (BOS added)."""
    import sentencepiece as spm
    from transformers import LlamaTokenizer

    out.mkdir(parents=True, exist_ok=True)
    corpus = out / "corpus.txt"
    rng = random.Random(0)
    lines = [rng.choice(TEXTS) + " " + rng.choice(TEXTS) for _ in range(400)]
    corpus.write_text("\n".join(lines), encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(out / "sp"), vocab_size=vocab_size, model_type="unigram",
        byte_fallback=True, character_coverage=1.0, unk_id=0, bos_id=1, eos_id=2, pad_id=3,
        num_threads=1, minloglevel=2, hard_vocab_limit=False,
    )
    corpus.unlink()
    tok = LlamaTokenizer(vocab_file=str(out / "sp.model"), add_bos_token=True, add_eos_token=False, legacy=False)
    return tok


def build_llama_config(vocab_size: int, **overrides):
    from transformers import LlamaConfig

    kw = {
        "vocab_size": vocab_size, "hidden_size": 64, "intermediate_size": 176, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 4, "max_position_embeddings": 128,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": False, "bos_token_id": 1,
        "eos_token_id": 2, "pad_token_id": 3,
    }
    kw.update(overrides)
    return LlamaConfig(**kw)


def build_checkpoints(root: Path, steps: list[int], tokenizer, **overrides) -> Path:
    """Save one HF LlamaForCausalLM per step as ``root/iter_{step:07d}`` (distinct weights)."""
    from transformers import LlamaForCausalLM

    vocab = ((len(tokenizer) + 63) // 64) * 64  # padded past the tokenizer, like LLM-jp-3
    for step in steps:
        torch.manual_seed(step)
        model = LlamaForCausalLM(build_llama_config(vocab, **overrides))
        out = root / f"iter_{step:07d}"
        model.save_pretrained(out, safe_serialization=True)
        tokenizer.save_pretrained(out)
    return root


STANDIN = "llm-jp/llm-jp-3-1.8b"


def standin_registry(folder: Path, name: str = STANDIN) -> Path:
    """A registry file declaring the tiny checkpoints a stand-in for ``name``: the packaged
    entry with its steps and revisions but without its ``shape``, which a tiny model fails.
    Set it as ``$LLMJP_CKPT_REGISTRY`` (and clear ``adapter.registry``'s cache)."""
    import dataclasses

    import yaml

    from llmjp_ckpt.models.registry import load_registry

    entry = dataclasses.asdict(load_registry()[name]) | {"shape": None}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "standin.yaml"
    path.write_text(yaml.safe_dump({"models": [entry]}), encoding="utf-8")
    return path
