"""SAE metrics on the val split, overall and per language -> ``metrics.json``.

Reconstruction metrics (explained variance, FVU, MSE, cosine) are measured in the space the SAE
was trained in: the per-token normalised activations (the model's own space for ``none``).
CE-loss and KL scores splice the SAE into the model with SAELens' ``get_recons_loss`` (the
SAE restores each token's norm / mean and std there) against zero ablation; the BOS position
keeps its own activation, as in SAELens' evals with special tokens ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from llmjp_ckpt.saes.config import MetricsSpec

KEYS = ("explained_variance", "fvu", "mse", "cosine", "l0", "dead_fraction", "dense_fraction", "ce_loss_score", "kl_div_score")


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

    def result(self, dense_threshold: float) -> dict[str, float | None]:
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
            "dead_fraction": (freq == 0).double().mean().item(),
            "dense_fraction": (freq > dense_threshold).double().mean().item(),
            "ce_loss_score": ce_score,
            "kl_div_score": kl_score,
            "ce_loss_without_sae": ce["orig"] / ce["n"] if ce["n"] else None,
            "ce_loss_with_sae": ce["sae"] / ce["n"] if ce["n"] else None,
            "ce_loss_with_ablation": ce["abl"] / ce["n"] if ce["n"] else None,
            "n_tokens": self.n,
        }


@torch.no_grad()
def evaluate(sae: Any, model: Any, val: Any, hook: str, layer_index: int, spec: MetricsSpec) -> dict[str, Any]:
    """Metrics of one inference SAE on ``val`` (a Dataset with ``input_ids`` and ``language``)."""
    from sae_lens.evals import get_recons_loss
    from sae_lens.training.activation_scaler import ActivationScaler

    n = min(len(val), spec.max_windows)
    bos = int(val[0]["input_ids"][0]) if n else None
    groups: dict[str, Acc] = {"all": Acc(sae.cfg.d_sae)}
    for start in tqdm(range(0, n, spec.batch_windows), desc=f"metrics [{sae.cfg.token_norm}]", leave=False):
        rows = val[start:min(n, start + spec.batch_windows)]
        tokens = torch.tensor(rows["input_ids"], dtype=torch.long, device=sae.device)
        _, cache = model.run_with_cache(tokens, names_filter=[hook], stop_at_layer=layer_index + 1)
        acts = cache[hook][:, 1:, :]
        xn, rec, feats = sae.reconstruct_normalized(acts)
        recon = None
        if spec.ce:
            recon = get_recons_loss(sae, model, ActivationScaler(), tokens, compute_kl=True, compute_ce_loss=True, ignore_tokens=[bos])
        for i, lang in enumerate(rows["language"]):
            for key in ("all", lang):
                acc = groups.setdefault(key, Acc(sae.cfg.d_sae))
                acc.add(xn[i], rec[i], feats[i])
                if recon is not None:
                    # CE at position p predicts token p+1; position 0 (BOS) is never replaced.
                    acc.ce["orig"] += recon["ce_loss_without_sae"][i, 1:].sum().item()
                    acc.ce["sae"] += recon["ce_loss_with_sae"][i, 1:].sum().item()
                    acc.ce["abl"] += recon["ce_loss_with_ablation"][i, 1:].sum().item()
                    acc.ce["n"] += recon["ce_loss_with_sae"][i, 1:].numel()
                    acc.kl["sae"] += recon["kl_div_with_sae"][i, 1:].sum().item()
                    acc.kl["abl"] += recon["kl_div_with_ablation"][i, 1:].sum().item()
                    acc.kl["n"] += recon["kl_div_with_sae"][i, 1:].numel()
    out: dict[str, Any] = dict(groups["all"].result(spec.dense_threshold))
    out["by_language"] = {lang: acc.result(spec.dense_threshold) for lang, acc in groups.items() if lang != "all"}
    out["space"] = "normalised" if sae.cfg.token_norm != "none" else "model"
    out["val_windows"] = n
    return out
