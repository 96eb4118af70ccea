"""Tiny builders for corpus and SAE-training tests: an llm-jp-corpus-shaped folder, configs."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path
from typing import Any

JA_WORDS = [
    "京都",
    "の",
    "猫",
    "は",
    "静か",
    "に",
    "眠る",
    "。",
    "犬",
    "公園",
    "で",
    "走る",
    "赤い",
    "りんご",
    "を",
    "食べ",
    "ました",
    "東京",
    "タワー",
    "高い",
]
EN_WORDS = [
    "The",
    "cat",
    "in",
    "Kyoto",
    "sleeps",
    "quietly",
    ".",
    "A",
    "dog",
    "runs",
    "park",
    "I",
    "ate",
    "red",
    "apple",
    "Tokyo",
    "Tower",
    "is",
    "tall",
    "friends",
]


def doc_text(rng: random.Random, lang: str, n_words: int) -> str:
    words = JA_WORDS if lang == "ja" else EN_WORDS
    sep = "" if lang == "ja" else " "
    return sep.join(rng.choice(words) for _ in range(n_words))


def build_corpus(root: Path, n_docs: dict[str, int] | None = None, seed: int = 0, short_every: int = 5,
                 gz: bool = True, words: tuple[int, int] = (60, 160)) -> Path:
    """``root/{ja/ja_wiki,en/en_wiki}/train_0.jsonl[.gz]`` with ``{"text": ...}`` lines.

    Every ``short_every``-th document is a few words long (below one window).
    """
    n_docs = n_docs or {"ja": 120, "en": 120}
    rng = random.Random(seed)
    sub = {"ja": "ja/ja_wiki", "en": "en/en_wiki"}
    for lang, n in n_docs.items():
        folder = root / sub[lang]
        folder.mkdir(parents=True, exist_ok=True)
        lines = []
        for i in range(n):
            k = 3 if short_every and i % short_every == 0 else rng.randint(*words)
            lines.append(json.dumps({"text": f"{i} " + doc_text(rng, lang, k)}, ensure_ascii=False))
        data = ("\n".join(lines) + "\n").encode("utf-8")
        if gz:
            with gzip.open(folder / "train_0.jsonl.gz", "wb") as fh:
                fh.write(data)
        else:
            (folder / "train_0.jsonl").write_bytes(data)
    return root


def data_config(corpus: Path, tokenizer: Path, **overrides: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "tokenizer": str(tokenizer),
        "corpus_root": str(corpus),
        "token_budget": 64 * 400,
        "seed": 0,
        "batch_docs": 32,
    }
    cfg.update(overrides)
    return cfg


def train_config(checkpoints: Path, steps: list[int], **overrides: Any) -> dict[str, Any]:
    """A tiny training config: 1 block-2 hook, 3 normalisations, a few hundred tokens a batch."""
    cfg: dict[str, Any] = {
        "model": {"source": str(checkpoints), "steps": steps},
        "hook_layer": 2,
        "saes": {"expansion": [4], "k": [4], "lr": [3e-3], "normalisation": ["none", "scalar", "standardization"]},
        "runner": {
            "train_batch_size_tokens": 256,
            "training_tokens": 256 * 12,
            "store_batch_size_prompts": 8,
            "n_batches_in_buffer": 4,
            "lr_warm_up_steps": 2,
            "dead_feature_window": 3,
        },
        "metrics": {"max_windows": 32, "batch_windows": 16},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return cfg


def build_one_checkpoint_run(root: Path) -> dict[str, Path]:
    """A 2-block Llama checkpoint ``root/ckpts/iter_0000010`` and its prepared run ``root/run``
    (80 + 80 documents, a 1.28M-token budget): the SAE tests' one-step world."""
    from llmjp_ckpt.data import corpus
    from tests.model_builders import build_checkpoints, build_tokenizer

    tok = build_tokenizer(root / "tok")
    tok.save_pretrained(root / "tok")
    build_checkpoints(root / "ckpts", [10], tok)  # 2 blocks
    build_corpus(root / "corpus", n_docs={"ja": 80, "en": 80})
    run = root / "run"
    corpus.prepare_data(data_config(root / "corpus", root / "tok", token_budget=64 * 20_000), run)
    return {"ckpts": root / "ckpts", "run": run}
