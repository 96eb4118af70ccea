"""The features stage labels every latent in one batched call on the store's arrays: the flat
inputs equal the per-latent examples, and the rows equal the per-latent labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from llmjp_ckpt.features import analyze
from llmjp_ckpt.features.store import FeatureStore, _rounded, save_store
from llmjp_ckpt.features.topn import TopNConfig, collect_topn
from llmjp_ckpt.labels.assign import LABEL_COLUMNS, label_feature
from llmjp_ckpt.labels.granularity import default_backend
from llmjp_ckpt.tokens import TokenText
from tests.feature_builders import build_token_text


def _bpe_text() -> TokenText:
    """A byte-level BPE vocabulary (GPT-2 byte alphabet): English words and split kanji."""
    from transformers.models.gpt2.tokenization_gpt2 import bytes_to_unicode

    alpha = bytes_to_unicode()
    parts = [b" the", b" cat", b"Kyoto", "猫".encode()[:1], "猫".encode()[1:], "京都".encode(), b"42",
             b" is", "の".encode()]
    pieces = ("<s>", "<unk>", *("".join(alpha[b] for b in p) for p in parts))
    return TokenText(pieces, bos_id=0, kind="byte-bpe", specials=frozenset({0, 1}))


def _store(tmp_path: Path, d_vocab: int, n_top: int = 6, seed: int = 0) -> FeatureStore:
    """A store with dead latents, ties, float and integer activations, and a latent that fires
    in fewer windows than ``n_top`` (so its buffer has empty slots)."""
    g = torch.Generator().manual_seed(seed)
    w, t, f = 40, 9, 24
    acts = torch.relu(torch.randn(w, t, f, generator=g)) ** 2
    acts[:, :, :4] = (acts[:, :, :4] * 3).round()  # integer activations (the paper rule's ok path)
    acts[:, :, 5] = 0.0  # dead
    acts[:, :, 6] = 0.0
    acts[[3, 17], 2, 6] = 1.5  # fires in two windows only, tied
    tokens = torch.randint(2, d_vocab, (w, t + 1), generator=g)
    tokens[:, 0] = 0 if d_vocab < 20 else 1
    tokens[:, 1:][:, ::4] = 2 + torch.arange(w)[:, None] % 3  # repeated pieces: token-like latents
    ids = torch.cat([torch.arange(w)[:, None], tokens[:, 1:]], 1)  # the encoder reads column 0
    res = collect_topn(ids, lambda b: {"x": acts[b[:, 0]]}, {"x": f}, TopNConfig(n_top=n_top, batch_size=7))["x"]
    save_store(tmp_path / "s", res, tokens, {"step": 10, "sae_id": "x", "sae_weights_hash": "h"})
    return FeatureStore.load(tmp_path / "s")


@pytest.mark.parametrize("kind", ["sentencepiece", "byte-bpe", "none"])
@pytest.mark.parametrize("n_examples", [6, 4])
def test_flat_inputs_equal_the_examples(tmp_path: Path, kind: str, n_examples: int) -> None:
    tt = {"sentencepiece": build_token_text(), "byte-bpe": _bpe_text(), "none": None}[kind]
    st = _store(tmp_path, 120 if kind != "byte-bpe" else 11)
    live, flat = st.label_inputs(tt, n_examples)
    ref = {f: st.examples(f, tt)[:n_examples] for f in range(st.d_sae)}
    assert live.tolist() == [f for f, ex in ref.items() if ex] and 5 not in live.tolist()
    assert len(flat) == len(live)
    for k, f in enumerate(live.tolist()):
        assert flat.examples(k) == ref[f]
    assert len(ref[6]) == 2  # the empty slots are left out


def test_rounding_table_equals_python_round() -> None:
    every = torch.arange(-(1 << 15), 1 << 15, dtype=torch.int32).to(torch.int16).view(torch.float16)
    finite = every[torch.isfinite(every)]
    got = _rounded(finite, 4)
    assert got.tolist() == [round(v, 4) for v in finite.float().tolist()]
    assert np.array_equal(_rounded(finite, None), finite.double().numpy())
    f32 = torch.tensor([0.123456, 2.5], dtype=torch.float32)
    assert _rounded(f32, 2).tolist() == [round(v, 2) for v in f32.tolist()]


@pytest.mark.parametrize("workers", [1, 2])
def test_feature_rows_equal_per_latent_labels(tmp_path: Path, workers: int) -> None:
    tt = build_token_text()
    st = _store(tmp_path, 120, seed=3)
    backend = default_backend()
    rows = analyze.feature_rows(st, 10, "x", tt, 5, backend, workers=workers)
    assert [r["feature"] for r in rows] == list(range(st.d_sae))
    for r in rows:
        want = label_feature(st.examples(r["feature"], tt)[:5], backend=backend)
        assert {k: r[k] for k in LABEL_COLUMNS} == want
        assert r["sae_weights_hash"] == "h" and r["checkpoint"] == 10
    assert all(rows[5][k] is None for k in LABEL_COLUMNS)  # dead: no labels
    assert sum(r["granularity"] is not None for r in rows) == st.d_sae - 1


def test_label_workers_from_config() -> None:
    from llmjp_ckpt.errors import UserError

    assert analyze.label_workers(analyze.FeaturesConfig(label_workers=3)) == 3
    assert analyze.label_workers(analyze.FeaturesConfig()) >= 1
    with pytest.raises(UserError, match="label_workers=0"):
        analyze.FeaturesConfig(label_workers=0)


def test_chunked_inputs_equal_the_whole(tmp_path: Path) -> None:
    from llmjp_ckpt.features.store import LabelInputs
    from llmjp_ckpt.labels.batch import label_features

    tt = build_token_text()
    st = _store(tmp_path, 120, seed=5)
    live, whole = st.label_inputs(tt, 5)
    src = LabelInputs(st, tt, 5, live)
    parts = [src.slice(lo, min(lo + 7, len(src))) for lo in range(0, len(src), 7)]
    got = [ex for p in parts for ex in (p.examples(k) for k in range(len(p)))]
    assert got == [whole.examples(k) for k in range(len(whole))]
    assert label_features(src, chunk=7, workers=2) == label_features(whole)


def test_equal_width_windows_equal_the_per_feature_functions() -> None:
    """The batched labeller's one-length fast path (what every store gives it) on odd windows:
    negative, float and tied activations, digits, neutral-only windows."""
    import random

    from llmjp_ckpt.labels.batch import label_features
    from llmjp_ckpt.labels.language import paper_language, script_language

    rng = random.Random(7)
    vocab = [" the", "の", "。", "1", "23", " Tokyo", "東京", "<0x0A>", " ", ")", " cat", "ネコ", " cats", "-"]
    feats = [[[(rng.choice(vocab), rng.choice([0, 0, 1, 2, 2.5, -1, 10, 0.3])) for _ in range(6)]
              for _ in range(rng.randint(1, 5))] for _ in range(300)]
    backend = default_backend()
    got = label_features(feats, backend, chunk=64)
    for ex, lab in zip(feats, got):
        want = (paper_language(ex), script_language(ex), *backend.classify(ex))
        assert (lab.language_paper, lab.language_script, lab.granularity, lab.confidence) == want
