"""The norm study: how large the residual stream is per token type and layer, and how many SAE
latents die under each per-token normalisation mode.

- Token norms: the L2 norm of ``blocks.{l}.hook_resid_post`` for every layer and token,
  grouped by token type (BOS, newline, punctuation, Japanese, English, other), per checkpoint.
- Dead latents: per SAE, by the one definition (:mod:`llmjp_ckpt.saes.dead`: never fired on
  the SAE's dead-latent evaluation set, read from its ``firing_counts.safetensors``).

Writes ``RUN/analysis/norms.json`` and a figure for each part under ``RUN/analysis/figures/``.
"""

from __future__ import annotations

import html
import unicodedata
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from llmjp_ckpt import atomic
from llmjp_ckpt.chars import (
    BYTE_PIECE_RE,
    byte_of_piece,
    is_ascii_letter,
    is_japanese_char_norm_study,
)
from llmjp_ckpt.config import read_json
from llmjp_ckpt.plotting import write_figures
from llmjp_ckpt.runfolder import sae_folders, step_dir
from llmjp_ckpt.tokens import TokenText

TOKEN_TYPES = ("BOS", "newline", "punctuation", "Japanese", "English", "other")
COLORS = ("#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a", "#7f7f7f")  # per token type
DEAD_DEFINITION = ("a latent that never fires over the SAE's dead-latent evaluation set "
                   "(firing_counts.safetensors; llmjp_ckpt.saes.dead)")


def token_type_of(text: str) -> str:
    """Type of one token from its piece text (``▁`` already a space, bytes as ``<0xNN>``)."""
    b = byte_of_piece(text)
    if b == 0x0A or "\n" in text:
        return "newline"
    if b is not None:
        return "other"  # a lone byte of a multibyte character
    core = BYTE_PIECE_RE.sub("", text).strip()  # byte-level BPE: "の<0xE7>" is Japanese
    if not core:
        return "other"
    if any(is_japanese_char_norm_study(ch) for ch in core):
        return "Japanese"
    if any(is_ascii_letter(ch) for ch in core):
        return "English"
    if all(unicodedata.category(ch)[0] in "PS" for ch in core):
        return "punctuation"
    return "other"


def token_types(tokens: Tensor, tt: TokenText | None) -> Tensor:
    """``[n, L]`` indices into :data:`TOKEN_TYPES`; position 0 (the BOS) is ``BOS``."""
    if tt is None:
        types = torch.full(tokens.shape, TOKEN_TYPES.index("other"), dtype=torch.long)
    else:
        table = {int(i): TOKEN_TYPES.index(token_type_of(tt.piece_text(int(i))))
                 for i in torch.unique(tokens).tolist()}
        types = tokens.clone().apply_(lambda i: table[i])
        if tt.bos_id is not None:
            types[tokens == tt.bos_id] = TOKEN_TYPES.index("BOS")
    types[:, 0] = TOKEN_TYPES.index("BOS")
    return types


@torch.no_grad()
def layer_norms(model: Any, tokens: Tensor, batch_size: int = 32) -> Tensor:
    """``[n_layers, n, L]`` L2 norms of every block's output."""
    names = [f"blocks.{i}.hook_resid_post" for i in range(model.cfg.n_layers)]
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(tokens), batch_size):
        _, cache = model.run_with_cache(tokens[i : i + batch_size].to(device),
                                        names_filter=lambda n: n in names)
        out.append(torch.stack([cache[n].float().norm(dim=-1).cpu() for n in names]))
    return torch.cat(out, 1)


def norm_rows(norms: Tensor, types: Tensor, step: int) -> list[dict[str, Any]]:
    """Per layer and token type: count, mean, median and 90th percentile of the norms."""
    rows = []
    for layer in range(norms.shape[0]):
        for k, name in enumerate(TOKEN_TYPES):
            v = norms[layer][types == k]
            if v.numel() == 0:
                continue
            rows.append({"checkpoint": step, "layer": layer + 1, "token_type": name,
                         "count": int(v.numel()), "mean": float(v.mean()),
                         "median": float(v.median()), "p90": float(torch.quantile(v, 0.9))})
    return rows


def dead_rows(run: Path) -> list[dict[str, Any]]:
    """Dead latents per SAE (:func:`llmjp_ckpt.saes.dead.alive_mask`), with its normalisation."""
    from llmjp_ckpt.saes.dead import alive_mask, firing_counts
    from llmjp_ckpt.saes.normalisation import mode_of

    rows = []
    for step, sae_id, folder in sae_folders(run):
        cfg = read_json(folder / "cfg.json")
        alive = alive_mask(folder)
        _, n_tokens = firing_counts(folder)
        mode = mode_of(cfg)
        dead = int((~alive).sum())
        rows.append({"checkpoint": step, "sae_id": sae_id, "normalization": mode,
                     "d_sae": int(alive.size), "dead": dead,
                     "dead_fraction": dead / max(int(alive.size), 1), "eval_tokens": n_tokens})
    return rows


def write_norm_study(run: Path, norms: list[dict[str, Any]], png: bool = True) -> list[Path]:
    """Write ``RUN/analysis/norms.json`` (token norms given, dead latents read here) and figures."""
    dead = dead_rows(run)
    out = run / "analysis"
    atomic.write_json(out / "norms.json", {"token_norms": norms, "dead_latents": dead,
                                           "dead_definition": DEAD_DEFINITION})
    return write_norm_figures(norms, dead, out / "figures", png)


def write_norm_figures(norms: list[dict[str, Any]], dead: list[dict[str, Any]], out: Path,
                       png: bool = True) -> list[Path]:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    steps = sorted({r["checkpoint"] for r in norms})
    fig = make_subplots(rows=1, cols=max(len(steps), 1), shared_yaxes=True,
                        subplot_titles=[step_dir(x) for x in steps])
    for col, step in enumerate(steps, start=1):
        for k, name in enumerate(TOKEN_TYPES):
            rs = [r for r in norms if r["checkpoint"] == step and r["token_type"] == name]
            if rs:  # one panel per checkpoint, one colour per token type
                fig.add_trace(go.Scatter(x=[r["layer"] for r in rs], y=[r["mean"] for r in rs],
                                         mode="lines+markers", name=name, legendgroup=name,
                                         showlegend=col == 1, line={"color": COLORS[k]}),
                              row=1, col=col)
    fig.update_layout(title="Residual-stream norm per token type across layers (mean L2 norm)")
    fig.update_yaxes(type="log")
    fig.update_xaxes(dtick=1, title_text="layer")
    figs = {"norms_by_token_type": fig}
    fig = go.Figure()
    for mode in sorted({r["normalization"] for r in dead}):
        steps_m = sorted({r["checkpoint"] for r in dead if r["normalization"] == mode})
        groups = [[r for r in dead if r["normalization"] == mode and r["checkpoint"] == st] for st in steps_m]
        fig.add_trace(go.Bar(  # several SAEs of one mode and checkpoint: their mean, all in the hover
            x=[step_dir(st) for st in steps_m],
            y=[sum(r["dead_fraction"] for r in g) / len(g) for g in groups], name=mode,
            hovertext=["<br>".join(f"{html.escape(r['sae_id'])}: {r['dead']}/{r['d_sae']}" for r in g)
                       for g in groups]))
    fig.update_layout(barmode="group", title="Dead latents per normalisation mode (mean over SAEs of a mode)",
                      xaxis_title="checkpoint", yaxis_title="fraction of latents never firing")
    figs["dead_latents_by_normalization"] = fig
    return [Path(f) for paths in write_figures(figs, out, png).values() for f in paths]
