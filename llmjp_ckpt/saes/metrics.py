"""SAE metrics on the val split, overall and per language -> ``metrics.json``.

Reconstruction metrics (explained variance, FVU, MSE, cosine) are measured in the space the SAE
was trained in: the per-token normalised activations (the model's own space for ``none``).
CE-loss and KL scores (:func:`splice_losses`) splice the SAE into the model (its forward
rescales each token by the norm / mean and std of the activation it replaces) and compare with
zero ablation; in both, the BOS position keeps its own activation (SAELens' zero ablation
zeroes BOS too, which inflates the ablation loss). Scores are ratios of sums over one token
group, so each language's scores use that language's clean, spliced and ablated losses:
``ce_loss_score = (CE_abl - CE_sae) / (CE_abl - CE_clean)``,
``kl_div_score = (KL_abl - KL_sae) / KL_abl``.

Dead latents (:mod:`llmjp_ckpt.saes.dead`): :func:`count_firings` counts, per latent, the
tokens it fires on over the first ``MetricsSpec.dead_eval_tokens`` trained val positions;
``dead_fraction`` is the share of latents with a count of 0 (per language: over that
language's tokens of the same set).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from llmjp_ckpt.saes.config import MetricsSpec

KEYS = (
    "explained_variance",
    "fvu",
    "mse",
    "cosine",
    "l0",
    "dead_fraction",
    "dense_fraction",
    "ce_loss_score",
    "kl_div_score",
)


@dataclass
class Acc:
    """Running sums for one token group."""

    d_sae: int
    n: int = 0
    sse: float = 0.0
    sum_sq: float = 0.0
    cos: float = 0.0
    l0: float = 0.0
    sum_x: torch.Tensor | None = None
    fired: torch.Tensor | None = None
    ce: dict[str, float] = field(default_factory=lambda: {"orig": 0.0, "sae": 0.0, "abl": 0.0, "n": 0.0})
    kl: dict[str, float] = field(default_factory=lambda: {"sae": 0.0, "abl": 0.0, "n": 0.0})

    def add(self, xn: torch.Tensor, rec: torch.Tensor, feats: torch.Tensor) -> None:
        xn, rec = xn.double(), rec.double()
        self.n += xn.shape[0]
        self.sse += (xn - rec).pow(2).sum().item()
        self.sum_sq += xn.pow(2).sum().item()
        s = xn.sum(0).cpu()
        self.sum_x = s if self.sum_x is None else self.sum_x + s
        self.cos += torch.nn.functional.cosine_similarity(xn, rec, dim=-1).sum().item()
        active = feats != 0
        self.l0 += active.sum().item()
        f = active.sum(0).cpu()
        self.fired = f if self.fired is None else self.fired + f

    def result(self, dense_threshold: float,
               firing: Firing | None = None) -> dict[str, float | None]:
        """Metrics of the group; ``dead_fraction`` from ``firing`` (the dead set) if given."""
        if self.n == 0 or self.sum_x is None or self.fired is None:
            return {k: None for k in KEYS} | {"n_tokens": 0}
        mse = self.sse / self.n
        var = self.sum_sq / self.n - (self.sum_x / self.n).pow(2).sum().item()
        ev = 1.0 - mse / var if var > 1e-12 else float("nan")
        freq = self.fired.double() / self.n
        ce = self.ce
        kl = self.kl
        ce_score = (ce["abl"] - ce["sae"]) / (ce["abl"] - ce["orig"]) if ce["n"] and ce["abl"] != ce["orig"] else None
        kl_score = (kl["abl"] - kl["sae"]) / kl["abl"] if kl["n"] and kl["abl"] else None
        return {
            "explained_variance": ev,
            "fvu": 1.0 - ev,
            "mse": mse,
            "cosine": self.cos / self.n,
            "l0": self.l0 / self.n,
            "dead_fraction": firing.dead_fraction if firing else (freq == 0).double().mean().item(),
            "dense_fraction": (freq > dense_threshold).double().mean().item(),
            "ce_loss_score": ce_score,
            "kl_div_score": kl_score,
            "ce_loss_without_sae": ce["orig"] / ce["n"] if ce["n"] else None,
            "ce_loss_with_sae": ce["sae"] / ce["n"] if ce["n"] else None,
            "ce_loss_with_ablation": ce["abl"] / ce["n"] if ce["n"] else None,
            "n_tokens": self.n,
        }


@dataclass
class Firing:
    """Tokens each latent fired on (``counts`` [d_sae]) over ``n_tokens`` tokens of one group."""

    counts: torch.Tensor
    n_tokens: int = 0

    @property
    def dead_count(self) -> int:
        return int((self.counts == 0).sum().item())

    @property
    def dead_fraction(self) -> float:
        return self.dead_count / max(1, self.counts.numel())


def keep_bos(new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """``new`` with position 0 (BOS) taken from ``old``: what splice and ablation both do."""
    out = new.clone()
    out[:, 0] = old[:, 0]
    return out


@torch.no_grad()
def splice_losses(sae: Any, model: Any, tokens: torch.Tensor, hook: str) -> dict[str, torch.Tensor]:
    """Per-position CE of the next token and KL to the clean model, ``[batch, T - 1]`` each.

    Keys ``ce_clean``, ``ce_sae``, ``ce_abl``, ``kl_sae``, ``kl_abl``. Position ``p`` predicts
    token ``p + 1``. The SAE run replaces the activation at ``hook`` by ``sae(acts)``, the
    ablation by zeros; both keep position 0 (BOS) as it was.
    """

    def splice(acts: torch.Tensor, hook: Any) -> torch.Tensor:
        rec = sae(acts.to(sae.device, sae.dtype)).to(acts.device, acts.dtype)
        return keep_bos(rec, acts)

    def ablate(acts: torch.Tensor, hook: Any) -> torch.Tensor:
        return keep_bos(torch.zeros_like(acts), acts)

    target = tokens[:, 1:]
    # float32 log-probabilities: [batch, T, vocab] in float64 would double the memory (100k vocab)
    clean = model(tokens, return_type="logits")[:, :-1].float().log_softmax(-1)
    out = {"ce_clean": -clean.gather(-1, target[..., None])[..., 0].double()}
    for name, fn in (("sae", splice), ("abl", ablate)):
        logp = model.run_with_hooks(tokens, return_type="logits", fwd_hooks=[(hook, fn)])
        logp = logp[:, :-1].float().log_softmax(-1)
        out[f"ce_{name}"] = -logp.gather(-1, target[..., None])[..., 0].double()
        out[f"kl_{name}"] = (clean.exp() * (clean - logp)).sum(-1).double()  # summed per position
    return out


@torch.no_grad()
def count_firings(sae: Any, model: Any, val: Any, hook: str, layer_index: int,
                  spec: MetricsSpec) -> dict[str, Firing]:
    """Per-latent firing counts over the first ``spec.dead_eval_tokens`` trained val positions.

    Key ``all`` is the dead-latent evaluation set (written to ``firing_counts.safetensors``);
    each language key counts that language's tokens of the same set.
    """
    per_window = len(val[0]["input_ids"]) - 1 if len(val) else 0
    budget = min(spec.dead_eval_tokens, len(val) * per_window)
    n_windows = -(-budget // per_window) if per_window else 0
    groups: dict[str, Firing] = {"all": Firing(torch.zeros(sae.cfg.d_sae, dtype=torch.int64))}
    left = budget
    bar = tqdm(range(0, n_windows, spec.batch_windows), desc="dead-latent counts", leave=False)
    for start in bar:
        rows = val[start:min(n_windows, start + spec.batch_windows)]
        tokens = torch.tensor(rows["input_ids"], dtype=torch.long, device=sae.device)
        _, cache = model.run_with_cache(tokens, names_filter=[hook], stop_at_layer=layer_index + 1)
        fired = sae.encode(cache[hook][:, 1:, :]) > 0
        for i, lang in enumerate(rows["language"]):
            take = min(left, fired.shape[1])
            if take <= 0:
                break
            f = fired[i, :take].sum(0).to("cpu", torch.int64)
            left -= take
            for key in ("all", lang):
                g = groups.setdefault(key, Firing(torch.zeros(sae.cfg.d_sae, dtype=torch.int64)))
                g.counts += f
                g.n_tokens += take
    return groups


@torch.no_grad()
def evaluate(sae: Any, model: Any, val: Any, hook: str, layer_index: int, spec: MetricsSpec,
             firing: dict[str, Firing] | None = None) -> dict[str, Any]:
    """Metrics of one inference SAE on ``val`` (a Dataset with ``input_ids`` and ``language``).

    ``firing`` (from :func:`count_firings`) gives ``dead_fraction``; without it, the latents
    never firing on the windows evaluated here.
    """
    n = min(len(val), spec.max_windows)
    groups: dict[str, Acc] = {"all": Acc(sae.cfg.d_sae)}
    desc = f"metrics [{sae.cfg.normalisation}]"
    bar = tqdm(range(0, n, spec.batch_windows), desc=desc, leave=False)
    for start in bar:
        rows = val[start:min(n, start + spec.batch_windows)]
        tokens = torch.tensor(rows["input_ids"], dtype=torch.long, device=sae.device)
        _, cache = model.run_with_cache(tokens, names_filter=[hook], stop_at_layer=layer_index + 1)
        acts = cache[hook][:, 1:, :]
        xn, rec, feats = sae.reconstruct_normalised(acts)
        losses = splice_losses(sae, model, tokens, hook) if spec.ce else None
        for i, lang in enumerate(rows["language"]):
            for key in ("all", lang):
                acc = groups.setdefault(key, Acc(sae.cfg.d_sae))
                acc.add(xn[i], rec[i], feats[i])
                if losses is not None:
                    # Position 0 (BOS) is never replaced: count predictions from positions 1..
                    for key_acc, part in (("orig", "clean"), ("sae", "sae"), ("abl", "abl")):
                        acc.ce[key_acc] += losses[f"ce_{part}"][i, 1:].sum().item()
                    acc.ce["n"] += losses["ce_sae"][i, 1:].numel()
                    acc.kl["sae"] += losses["kl_sae"][i, 1:].sum().item()
                    acc.kl["abl"] += losses["kl_abl"][i, 1:].sum().item()
                    acc.kl["n"] += losses["kl_sae"][i, 1:].numel()
    firing = firing or {}
    out: dict[str, Any] = dict(groups["all"].result(spec.dense_threshold, firing.get("all")))
    out["by_language"] = {lang: acc.result(spec.dense_threshold, firing.get(lang))
                          for lang, acc in groups.items() if lang != "all"}
    if "all" in firing:
        out["dead_count"] = firing["all"].dead_count
        out["dead_eval_tokens"] = firing["all"].n_tokens
        for lang, res in out["by_language"].items():
            f = firing.get(lang)  # None: no token of this language in the dead-latent set
            res["dead_count"] = f.dead_count if f else None
            res["dead_eval_tokens"] = f.n_tokens if f else 0
            res["dead_fraction"] = f.dead_fraction if f else None
    out["space"] = "normalised" if sae.cfg.normalisation != "none" else "model"
    out["val_windows"] = n
    return out
