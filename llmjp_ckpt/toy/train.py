"""Train a tiny LLM-jp-3-shaped ``LlamaForCausalLM`` from scratch, deterministically, on CPU.

LLM-jp-3's shape: untied embeddings, RMSNorm, gated SiLU MLP, rope θ 10000, no biases, a
vocabulary padded past the tokenizer's. Checkpoints are HF folders (safetensors + tokenizer
files) named like the study's, ``checkpoints/iter_{step:07d}/``, saved at a given schedule.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from llmjp_ckpt import atomic
from llmjp_ckpt.runfolder import step_dir


@dataclass(frozen=True)
class ModelShape:
    """The tiny model's size (LLM-jp-3-1.8B: 2048 / 7168 / 24 layers / 16 heads)."""

    hidden: int = 96
    intermediate: int = 256
    layers: int = 4
    heads: int = 4
    max_positions: int = 256


@dataclass(frozen=True)
class LMTrainConfig:
    """Optimisation settings; ``steps`` is the checkpoint schedule, its last entry the end."""

    steps: tuple[int, ...] = (10, 30, 100, 300, 1000)
    batch: int = 16
    seq_len: int = 64
    lr: float = 3e-3
    warmup: int = 20
    weight_decay: float = 0.01


def llama_config(shape: ModelShape, vocab_size: int):
    """A ``LlamaConfig`` with LLM-jp-3's architecture choices."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=shape.hidden,
        intermediate_size=shape.intermediate,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.heads,
        hidden_act="silu",
        max_position_embeddings=shape.max_positions,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=False,
        attention_bias=False,
        mlp_bias=False,
        initializer_range=0.02,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=3,
    )


@contextlib.contextmanager
def deterministic(threads: int = 1) -> Iterator[None]:
    """Deterministic kernels on a fixed number of threads; restores the previous settings."""
    old_threads, old_det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det)


def _lr(step: int, cfg: LMTrainConfig) -> float:
    """Linear warm-up, then cosine decay to a tenth (like most LLM pre-training)."""
    total = cfg.steps[-1]
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, total - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train(stream: torch.Tensor, shape: ModelShape, cfg: LMTrainConfig, vocab_size: int,
          out_dir: str | Path, tokenizer_dir: str | Path, seed: int) -> list[dict]:
    """Train on random windows of the packed token ``stream``; save checkpoints; the log rows.

    Each row: ``step``, ``loss`` (mean training loss of the steps since the previous checkpoint),
    ``tokens`` (seen so far), ``lr``.
    """
    from transformers import AutoTokenizer, LlamaForCausalLM

    out_dir = Path(out_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    rows: list[dict] = []
    with deterministic():
        torch.manual_seed(seed)
        model = LlamaForCausalLM(llama_config(shape, vocab_size))
        model.train()
        decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
        rest = [p for n, p in model.named_parameters() if p.ndim < 2]
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}],
            lr=cfg.lr, betas=(0.9, 0.95), eps=1e-8,
        )
        gen = torch.Generator().manual_seed(seed)
        n_windows = stream.numel() - cfg.seq_len - 1
        window = torch.arange(cfg.seq_len + 1)
        losses: list[float] = []
        save_at = set(cfg.steps)
        for step in tqdm(range(1, cfg.steps[-1] + 1), desc="toy: training", unit="step"):
            for group in opt.param_groups:
                group["lr"] = _lr(step - 1, cfg)
            starts = torch.randint(0, n_windows, (cfg.batch,), generator=gen)
            batch = stream[starts[:, None] + window]
            loss = model(input_ids=batch, labels=batch).loss  # HF shifts: seq_len predictions
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            losses.append(float(loss.detach()))
            if step in save_at:
                save_checkpoint(model, tokenizer, out_dir / step_dir(step))
                rows.append({"step": step, "loss": sum(losses) / len(losses),
                             "last_loss": losses[-1], "tokens": step * cfg.batch * cfg.seq_len,
                             "lr": _lr(step - 1, cfg)})
                losses = []
    return rows


def save_checkpoint(model, tokenizer, path: Path) -> Path:
    """One HF checkpoint folder (config, safetensors weights, tokenizer files), written whole."""
    with atomic.atomic_dir(path) as tmp:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
    return path
