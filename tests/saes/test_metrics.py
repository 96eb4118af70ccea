"""metrics.py by value: reconstruction on a hand-set 2x2 case, CE/KL on a tiny model (BOS kept in
splice and ablation, per-language losses), dead-latent counts of a planted SAE."""

from __future__ import annotations

import datasets
import pytest
import torch

import llmjp_ckpt  # noqa: F401  registers the architecture
from llmjp_ckpt.saes import dead
from llmjp_ckpt.saes.config import MetricsSpec
from llmjp_ckpt.saes.metrics import Acc, count_firings, evaluate, splice_losses
from llmjp_ckpt.saes.normalisation import TokenNormTopKSAE, TokenNormTopKSAEConfig
from tests.feature_builders import HOOK, build_model

D = 32  # build_model's d_model


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def planted_sae(mode: str = "none", kind: str = "identity", n_dead: int = 0) -> TokenNormTopKSAE:
    """``identity``: W_enc = [I, -I], W_dec = [I; -I], K = d_sae, so decode(encode(x)) = x exactly
    (relu(x) - relu(-x)); ``zero``: the same encoder, a zero decoder (output 0 = the ablation).
    ``dead``: K = d_sae - n_dead, the first n_dead latents get b_enc = -1e4 (never fire) and the
    others b_enc = +1e3 (fire on every token)."""
    d_sae = 2 * D
    k = d_sae - n_dead if kind == "dead" else d_sae
    sae = TokenNormTopKSAE(TokenNormTopKSAEConfig(d_in=D, d_sae=d_sae, k=k, normalisation=mode))
    eye = torch.eye(D)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], 1))
        sae.W_dec.copy_(torch.cat([eye, -eye], 0) * (0 if kind == "zero" else 1))
        sae.b_dec.zero_()
        sae.b_enc.zero_()
        if kind == "dead":
            sae.b_enc.fill_(1e3)
            sae.b_enc[:n_dead] = -1e4
    sae.cfg.metadata.hook_name = HOOK
    return sae.eval()


def val_split(n_per_lang: int = 6, length: int = 17) -> datasets.Dataset:
    """ja windows draw tokens 3..59, en windows 60..119: the languages' losses differ."""
    g = torch.Generator().manual_seed(1)
    rows, langs = [], []
    for lang, (lo, hi) in (("ja", (3, 60)), ("en", (60, 120))):
        t = torch.randint(lo, hi, (n_per_lang, length), generator=g)
        t[:, 0] = 1  # BOS
        rows += t.tolist()
        langs += [lang] * n_per_lang
    order = torch.randperm(len(rows), generator=g).tolist()  # interleave the languages
    return datasets.Dataset.from_dict({"input_ids": [rows[i] for i in order],
                                       "language": [langs[i] for i in order]})


def test_reconstruction_metrics_on_a_hand_set_2x2_case():
    # x = [[2, 0], [0, 2]], reconstruction [[2, 0], [0, 1]]: SSE 1 over 2 tokens -> MSE 0.5;
    # mean token (1, 1), total variance E||x||^2 - ||E x||^2 = 4 - 2 = 2 -> EV 1 - 0.5 / 2 = 0.75.
    acc = Acc(d_sae=3)
    x = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    rec = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    feats = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 3.0]])
    acc.add(x, rec, feats)
    # CE: clean 2.0, SAE 3.0, ablation 6.0 nats (sums over 1 token) -> (6 - 3) / (6 - 2) = 0.75
    acc.ce |= {"orig": 2.0, "sae": 3.0, "abl": 6.0, "n": 1.0}
    # KL: SAE 0.5, ablation 2.0 -> (2 - 0.5) / 2 = 0.75
    acc.kl |= {"sae": 0.5, "abl": 2.0, "n": 1.0}
    r = acc.result(dense_threshold=0.4)
    assert r["mse"] == pytest.approx(0.5)
    assert r["explained_variance"] == pytest.approx(0.75)
    assert r["fvu"] == pytest.approx(0.25)
    assert r["cosine"] == pytest.approx(1.0)  # both reconstructions point the right way
    assert r["l0"] == pytest.approx(1.5)
    assert r["dead_fraction"] == 0.0
    assert r["dense_fraction"] == pytest.approx(1.0)  # each fires on 1/2 of tokens > 0.4
    assert r["ce_loss_score"] == pytest.approx(0.75) and r["kl_div_score"] == pytest.approx(0.75)
    assert r["ce_loss_with_ablation"] == pytest.approx(6.0)


def test_splice_and_ablation_both_keep_bos():
    model = build_model()
    tokens = torch.tensor(val_split()["input_ids"][:4])
    out = splice_losses(planted_sae("scalar"), model, tokens, HOOK)
    # an exact SAE (the per-token scale restored from the activation it replaces) changes nothing
    torch.testing.assert_close(out["ce_sae"], out["ce_clean"], atol=1e-4, rtol=1e-4)
    assert out["kl_sae"].abs().max() < 1e-6
    # ablation: BOS's own prediction is untouched (position 0 only sees itself) ...
    torch.testing.assert_close(out["ce_abl"][:, 0], out["ce_clean"][:, 0], atol=1e-5, rtol=1e-5)
    assert out["kl_abl"][:, 0].abs().max() < 1e-6
    # ... and the rest equals a hand-written hook that zeroes positions 1.. only
    def zero_after_bos(acts, hook):
        acts = acts.clone()
        acts[:, 1:] = 0
        return acts

    logits = model.run_with_hooks(tokens, return_type="logits", fwd_hooks=[(HOOK, zero_after_bos)])
    clean = model(tokens, return_type="logits")
    lp, lq = clean[:, :-1].log_softmax(-1), logits[:, :-1].log_softmax(-1)
    F = torch.nn.functional
    ce = F.cross_entropy(logits[:, :-1].transpose(1, 2), tokens[:, 1:], reduction="none")
    kl = F.kl_div(lq, lp, log_target=True, reduction="none").sum(-1)  # KL(clean || ablated)
    torch.testing.assert_close(out["ce_abl"].float(), ce, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out["kl_abl"].float(), kl, atol=1e-4, rtol=1e-4)
    # SAELens' zero ablation zeroes BOS as well: a larger loss than ours
    def zero_all(acts, hook):
        return torch.zeros_like(acts)

    ce_all = model.run_with_hooks(tokens, return_type="loss", loss_per_token=True,
                                  fwd_hooks=[(HOOK, zero_all)])
    assert not torch.allclose(ce_all, out["ce_abl"].float(), atol=1e-3)


@pytest.mark.parametrize("kind, score", [("identity", 1.0), ("zero", 0.0)])
def test_ce_and_kl_scores_of_exact_and_ablating_saes(kind, score):
    """An exact SAE scores 1 on CE and KL; one that outputs the ablation (zeros) scores 0."""
    model = build_model()
    spec = MetricsSpec(max_windows=12, batch_windows=5)
    m = evaluate(planted_sae("none", kind), model, val_split(), HOOK, 0, spec)
    for res in (m, m["by_language"]["ja"], m["by_language"]["en"]):
        assert res["ce_loss_score"] == pytest.approx(score, abs=1e-4)
        assert res["kl_div_score"] == pytest.approx(score, abs=1e-4)
    if kind == "identity":
        assert m["explained_variance"] == pytest.approx(1.0, abs=1e-5)
        assert m["fvu"] == pytest.approx(0.0, abs=1e-5)


def test_per_language_ce_uses_that_languages_losses():
    model = build_model()
    val = val_split()
    sae = planted_sae("scalar")
    with torch.no_grad():
        sae.W_dec.mul_(0.5)  # halfway between exact and ablation (a random model: any score)
    # one batch of all 12 windows in both, so the float32 forwards are the same computation
    m = evaluate(sae, model, val, HOOK, 0, MetricsSpec(max_windows=12, batch_windows=12))
    losses = splice_losses(sae, model, torch.tensor(val["input_ids"]), HOOK)
    for lang in ("ja", "en"):
        rows = [i for i, g in enumerate(val["language"]) if g == lang]
        part = {k: v[rows, 1:].double() for k, v in losses.items()}  # from replaced positions
        res = m["by_language"][lang]
        for key, name in (("ce_loss_without_sae", "ce_clean"), ("ce_loss_with_sae", "ce_sae"),
                          ("ce_loss_with_ablation", "ce_abl")):
            assert res[key] == pytest.approx(part[name].mean().item(), rel=1e-6)
        abl, sae_, clean = (part[k].sum() for k in ("ce_abl", "ce_sae", "ce_clean"))
        ce = (abl - sae_) / (abl - clean)
        kl = (part["kl_abl"].sum() - part["kl_sae"].sum()) / part["kl_abl"].sum()
        assert res["ce_loss_score"] == pytest.approx(ce.item(), rel=1e-6)
        assert res["kl_div_score"] == pytest.approx(kl.item(), rel=1e-6)
    ja, en = m["by_language"]["ja"], m["by_language"]["en"]
    assert ja["ce_loss_with_ablation"] != pytest.approx(en["ce_loss_with_ablation"], rel=1e-3)
    assert ja["ce_loss_without_sae"] != pytest.approx(en["ce_loss_without_sae"], rel=1e-3)


def test_dead_count_of_a_planted_sae_is_exact(tmp_path):
    model = build_model()
    val = val_split()  # 12 windows x 16 trained positions = 192 tokens
    sae = planted_sae("scalar", "dead", n_dead=10)
    spec = MetricsSpec(max_windows=12, batch_windows=5, dead_eval_tokens=100, ce=False)
    firing = count_firings(sae, model, val, HOOK, 0, spec)
    allf = firing["all"]
    assert allf.n_tokens == 100  # the first 100 positions, not a whole number of windows
    assert (allf.counts[:10] == 0).all() and (allf.counts[10:] == 100).all()
    assert firing["ja"].n_tokens + firing["en"].n_tokens == 100
    dead.write_firing_counts(tmp_path, allf.counts.numpy(), allf.n_tokens)
    assert dead.dead_count(tmp_path) == 10 and int(dead.alive_mask(tmp_path).sum()) == 54
    m = evaluate(sae, model, val, HOOK, 0, spec, firing)
    assert m["dead_count"] == 10 and m["dead_fraction"] == pytest.approx(10 / 64)
    assert m["dead_eval_tokens"] == 100 and m["by_language"]["ja"]["dead_count"] == 10
    # capped at the split: 192 trained positions
    big = count_firings(sae, model, val, HOOK, 0,
                        MetricsSpec(dead_eval_tokens=10**9, batch_windows=5))
    assert big["all"].n_tokens == 12 * 16 and (big["all"].counts[10:] == 192).all()
