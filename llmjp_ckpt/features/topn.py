"""True top-N activating windows for every SAE latent, in one streaming pass.

The pass streams every window once: per batch it reduces the SAE activations to one value per
(window, latent) — the window's max — and merges them into running per-latent buffers of the
N best windows (a stable sort of ``[buffer | batch]``, so ties keep the earlier window) and
firing counts and sums. Memory is O(latents × N × positions), independent of the number of
windows.

Per-token values are kept *during* the pass, not re-read after it. A second pass that
re-encodes "only the selected windows" is no saving at the study's size: 32,768 latents × 50
examples are 1.6M (latent, window) slots, so nearly every test window is some latent's
example and pass 2 was a second full model pass. Instead each buffer entry owns a physical
slot of a ``[latents, N, positions]`` float16 store; when a window enters a latent's top N,
its per-token values are copied into the slot freed by the window it evicts (only windows
where the latent fired: a zero entry is dropped at the end anyway). The copies are the
entries that enter the buffers — about N × (1 + ln(windows / N)) per latent over a whole pass,
most of them in the first batches — and the store costs latents × N × positions × 2 bytes
(210 MB at 32,768 × 50 × 64), on the same device as the activations. The values stored are
those of the forward that ranked them, so results equal the old re-read's (tested).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm.auto import tqdm

from llmjp_ckpt.errors import UserError

# tokens [B, L] (BOS first) -> {name: activations [B, T, d_sae]} for the positions studied
EncodeFn = Callable[[Tensor], dict[str, Tensor]]


@dataclass(frozen=True)
class TopNConfig:
    """How many examples to keep per latent."""

    n_top: int = 50  # the study's 50 examples per feature
    batch_size: int = 32  # windows per forward pass

    def __post_init__(self) -> None:
        for name in ("n_top", "batch_size"):
            if getattr(self, name) < 1:
                raise UserError(f"top-N config: {name}={getattr(self, name)}, expected >= 1")


@dataclass
class FeatureTopN:
    """The result for one SAE. Window ids index the token windows that were streamed."""

    top_values: Tensor  # [F, N] float32: window max, descending; 0 where no example
    top_windows: Tensor  # [F, N] int64: window id, -1 where no example
    top_token_acts: Tensor  # [F, N, T] float16: per-token activation of those windows
    fire_count: Tensor  # [F] int64: tokens where the latent is > 0
    act_sum: Tensor  # [F] float64: sum of activations
    max_activation: Tensor  # [F] float32
    n_tokens: int
    n_windows: int

    @property
    def frequency(self) -> Tensor:
        """Firing fraction over all studied tokens."""
        return self.fire_count.double() / max(self.n_tokens, 1)

    @property
    def mean_activation(self) -> Tensor:
        """Mean activation over the tokens where the latent fires (0 for a dead latent)."""
        return torch.where(self.fire_count > 0, self.act_sum / self.fire_count.clamp(min=1), 0.0)


class TopNCollector:
    """Running per-latent buffers for one SAE (see the module docstring)."""

    def __init__(self, d_sae: int, cfg: TopNConfig, device: str | torch.device = "cpu"):
        self.cfg, self.d_sae = cfg, d_sae
        n = cfg.n_top
        self.top_values = torch.full((d_sae, n), float("-inf"), device=device)
        self.top_windows = torch.full((d_sae, n), -1, dtype=torch.long, device=device)
        # physical slot in ``_token_store`` of each (sorted) buffer entry
        self.top_slot = torch.arange(n, device=device).expand(d_sae, n).contiguous()
        self.fire_count = torch.zeros(d_sae, dtype=torch.long, device=device)
        self.act_sum = torch.zeros(d_sae, dtype=torch.float64, device=device)
        self.max_activation = torch.zeros(d_sae, device=device)
        self._token_store: Tensor | None = None  # [F, N, T] float16, allocated on first update
        self.n_tokens = 0
        self.n_windows = 0
        self.n_positions: int | None = None
        self.top_token_acts: Tensor | None = None

    # --- pass 1 -------------------------------------------------------------------------
    @torch.no_grad()
    def update(self, acts: Tensor, window_ids: Tensor) -> None:
        """Merge a batch ``acts [B, T, F]`` of windows ``window_ids [B]`` into the buffers."""
        if acts.ndim != 3 or acts.shape[2] != self.d_sae or acts.shape[0] != len(window_ids):
            raise ValueError(f"acts {tuple(acts.shape)} do not match {len(window_ids)} windows × d_sae {self.d_sae}")
        acts = acts.detach().float()
        self._to(acts.device)
        window_ids = window_ids.long().to(acts.device)
        if self.n_positions is not None and acts.shape[1] != self.n_positions:
            raise ValueError(f"acts have {acts.shape[1]} positions, "
                             f"earlier batches {self.n_positions}")
        self.n_positions = acts.shape[1]
        if self._token_store is None:
            self._token_store = torch.zeros(self.d_sae, self.cfg.n_top, acts.shape[1],
                                            dtype=torch.float16, device=acts.device)
        self.n_tokens += acts.shape[0] * acts.shape[1]
        self.n_windows += acts.shape[0]
        flat = acts.reshape(-1, self.d_sae)
        ones = torch.ones(1, flat.shape[0], device=flat.device)
        # per-latent sums as a matrix-vector product: far faster than reducing over two dims
        if float(flat.amin()) < 0:  # TopK / ReLU / JumpReLU codes are >= 0: skip the copy then
            flat = flat.clamp(min=0)
        # SAE codes are sparse: counting the nonzero entries beats reducing a dense mask
        self.fire_count += torch.bincount(flat.nonzero()[:, 1], minlength=self.d_sae)
        self.act_sum += (ones @ flat).squeeze(0).double()
        wmax = acts.amax(1).T.contiguous()  # [F, B]
        self.max_activation = torch.maximum(self.max_activation, wmax.amax(1))
        # top-N: only latents whose batch max beats their current N-th best can change; for those,
        # a stable descending sort of [buffer | batch] keeps the earlier window on ties
        rows = (wmax.amax(1) > self.top_values[:, -1]).nonzero().squeeze(1)
        if len(rows):
            self._merge(acts, rows, wmax[rows], window_ids)

    def _merge(self, acts: Tensor, rows: Tensor, wmax: Tensor, window_ids: Tensor) -> None:
        """Merge the batch maxima ``wmax [R, B]`` of latents ``rows`` into their buffers and copy
        the per-token values of the windows that enter into the slots of those they evict."""
        n = self.cfg.n_top
        b_ids = window_ids.expand(len(rows), -1)
        vals = torch.cat([self.top_values[rows], wmax], 1)
        order = torch.sort(vals, dim=1, descending=True, stable=True).indices[:, :n]
        new_vals = vals.gather(1, order)
        self.top_values[rows] = new_vals
        self.top_windows[rows] = torch.cat([self.top_windows[rows], b_ids], 1).gather(1, order)
        # slots: kept entries keep theirs; each row's entering windows take, in order, the slots
        # of the entries it evicted (as many as enter, so row-major order pairs them up)
        old_slot = self.top_slot[rows]
        from_batch = order >= n
        kept = torch.zeros(len(rows), n + 1, dtype=torch.bool, device=order.device)
        kept.scatter_(1, torch.where(from_batch, n, order), True)
        slots = old_slot.gather(1, order.clamp(max=n - 1))
        slots[from_batch] = old_slot[~kept[:, :n]]
        self.top_slot[rows] = slots
        r, c = (from_batch & (new_vals > 0)).nonzero(as_tuple=True)
        if len(r):
            feat = rows[r]
            assert self._token_store is not None
            self._token_store[feat, slots[r, c]] = acts[order[r, c] - n, :, feat].to(torch.float16)

    _BUFFERS = ("top_values", "top_windows", "top_slot", "fire_count", "act_sum",
                "max_activation", "_token_store")

    def _to(self, device: torch.device) -> None:
        """Keep the running buffers where the activations are (CPU or an accelerator)."""
        if self.top_values.device == device:
            return
        for name in self._BUFFERS:
            if getattr(self, name) is not None:
                setattr(self, name, getattr(self, name).to(device))

    def finish_pass1(self) -> None:
        """Drop non-firing entries and put the per-token values in buffer order (on the CPU)."""
        if self.n_windows == 0 or self._token_store is None:
            raise UserError("no token windows to collect top-N examples from (empty split?)")
        self._to(torch.device("cpu"))
        empty = ~(self.top_values > 0)
        self.top_windows[empty] = -1
        self.top_values[empty] = 0.0
        t = self._token_store.shape[2]
        idx = self.top_slot.unsqueeze(2).expand(-1, -1, t)
        self.top_token_acts = self._token_store.gather(1, idx)
        self.top_token_acts[empty] = 0
        self._token_store = None

    def result(self) -> FeatureTopN:
        assert self.top_token_acts is not None
        return FeatureTopN(
            top_values=self.top_values, top_windows=self.top_windows,
            top_token_acts=self.top_token_acts,
            fire_count=self.fire_count, act_sum=self.act_sum, max_activation=self.max_activation,
            n_tokens=self.n_tokens, n_windows=self.n_windows,
        )


def _batches(ids: Tensor, size: int) -> Iterator[Tensor]:
    for i in range(0, len(ids), size):
        yield ids[i : i + size]


def collect_topn(
    tokens: Tensor, encode: EncodeFn, d_sae: dict[str, int], cfg: TopNConfig = TopNConfig(),
    desc: str = "top-N", device: str | torch.device = "cpu",
) -> dict[str, FeatureTopN]:
    """Top-N for every latent of every SAE in ``d_sae`` over ``tokens [n_windows, L]``.

    ``encode`` runs the model once per batch and returns each SAE's activations, so several
    SAEs on the same checkpoint share one forward pass; it is called once per batch of windows
    (no second pass). The buffers live on ``device`` (they follow the activations' device).
    """
    if tokens.ndim != 2 or len(tokens) == 0:
        raise UserError(f"token windows: shape {tuple(tokens.shape)}, expected [n_windows > 0, length]")
    collectors = {name: TopNCollector(d, cfg, device) for name, d in d_sae.items()}
    all_ids = torch.arange(len(tokens))
    for ids in tqdm(list(_batches(all_ids, cfg.batch_size)), desc=f"{desc} windows", leave=False):
        acts = encode(tokens[ids])
        for name, col in collectors.items():
            col.update(acts[name], ids)
    for col in collectors.values():
        col.finish_pass1()
    return {name: col.result() for name, col in collectors.items()}


def model_encoder(model: torch.nn.Module, saes: dict[str, torch.nn.Module],
                  first_position: int = 1) -> EncodeFn:
    """An :data:`EncodeFn` from a HookedTransformer and SAELens SAEs (their ``cfg.metadata.hook_name``).

    The model stops after the deepest hooked block; positions before ``first_position`` (BOS)
    are not studied.
    """
    hooks = {name: sae.cfg.metadata.hook_name for name, sae in saes.items()}
    if any(h is None for h in hooks.values()):
        raise UserError(
            f"SAE without a hook name in cfg.json metadata: {sorted(k for k, h in hooks.items() if h is None)}"
        )
    layers = [_layer_of(h) for h in hooks.values()]
    stop = max(layers) + 1 if all(x is not None for x in layers) else None
    wanted = set(hooks.values())

    @torch.no_grad()
    def encode(toks: Tensor) -> dict[str, Tensor]:
        device = next(model.parameters()).device
        _, cache = model.run_with_cache(
            toks.to(device), stop_at_layer=stop, names_filter=lambda n: n in wanted,
        )
        return {name: sae.encode(cache[h][:, first_position:]) for name, (sae, h) in
                ((n, (saes[n], hooks[n])) for n in saes)}

    return encode


def _layer_of(hook: str) -> int | None:
    parts = hook.split(".")
    if len(parts) > 1 and parts[0] == "blocks" and parts[1].isdigit():
        return int(parts[1])
    return None

