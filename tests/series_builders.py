"""Tiny public-style checkpoint series for offline tests: a GPT-NeoX (Pythia-shaped) model saved
per step, a byte-level BPE tokenizer from the toy corpus, and a local Hugging Face hub cache
holding revisions (branches) of a model."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import torch


def build_bpe_tokenizer(out: Path, vocab_size: int = 400) -> Path:
    """The toy's byte-level BPE (``<s>`` = 1 prepended) trained on a small toy corpus."""
    from llmjp_ckpt.toy import tokenizer as tk
    from llmjp_ckpt.toy.corpus import CorpusConfig, Generator

    docs = Generator(0, CorpusConfig(n_docs=80)).documents()
    return tk.save_hf_byte_bpe(tk.build_byte_bpe([d.delimited(tk.DELIMITER) for d in docs],
                                                 vocab_size), out)


def build_neox_series(root: Path, steps: list[int], tokenizer_dir: Path) -> Path:
    """One tiny ``GPTNeoXForCausalLM`` per step as ``root/iter_{step:07d}`` (distinct weights)."""
    from transformers import AutoTokenizer, GPTNeoXConfig, GPTNeoXForCausalLM

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    vocab = ((len(tok) + 63) // 64) * 64
    for step in steps:
        torch.manual_seed(step)
        cfg = GPTNeoXConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2,
                            num_attention_heads=2, intermediate_size=64,
                            max_position_embeddings=64, rotary_pct=0.25, bos_token_id=1,
                            eos_token_id=2, tie_word_embeddings=False)
        out = root / f"iter_{step:07d}"
        GPTNeoXForCausalLM(cfg).save_pretrained(out, safe_serialization=True)
        tok.save_pretrained(out)
    return root


def put_in_hub_cache(cache: Path, repo_id: str, revisions: dict[str, Path]) -> Path:
    """Lay ``revisions`` (branch name -> checkpoint folder) out as the hub cache does:
    ``models--org--name/refs/<branch>`` holds a commit hash, ``snapshots/<hash>/`` the files."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    for rev, folder in revisions.items():
        commit = hashlib.sha1(f"{repo_id}@{rev}".encode()).hexdigest()
        shutil.copytree(folder, repo / "snapshots" / commit, dirs_exist_ok=True)
        ref = repo / "refs" / rev
        ref.parent.mkdir(parents=True, exist_ok=True)
        ref.write_text(commit)
    return repo


def snapshot(cache: Path, repo_id: str, rev: str) -> Path:
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    return repo / "snapshots" / (repo / "refs" / rev).read_text()


def write_registry(path: Path, models: list[dict]) -> Path:
    """A registry file for ``$LLMJP_CKPT_REGISTRY`` (JSON is YAML)."""
    path.write_text(json.dumps({"models": models}), encoding="utf-8")
    return path
