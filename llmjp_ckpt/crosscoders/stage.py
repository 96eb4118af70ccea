"""The crosscoder stage: one crosscoder over a run's checkpoints -> RUN/crosscoders/, analysis.

Reads the train split and the checkpoints the SAEs were trained on (same hook), trains one
crosscoder through SAELens, and writes ``RUN/analysis/crosscoder.json`` (classes, births, pair
histograms, agreement with the independent-SAE lineages) and its figures.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from llmjp_ckpt import atomic
from llmjp_ckpt.config import build, read_json, read_yaml
from llmjp_ckpt.crosscoders import analysis
from llmjp_ckpt.crosscoders import labels as cc_labels
from llmjp_ckpt.crosscoders.stream import checkpoint_stream
from llmjp_ckpt.crosscoders.train import CrosscoderConfig, train_crosscoder
from llmjp_ckpt.errors import UserError
from llmjp_ckpt.plotting import write_figures
from llmjp_ckpt.runfolder import RunFolder, sae_folders, step_dir

STAGE = "crosscoder"


def load_config(path: str | Path | None) -> CrosscoderConfig:
    """The config from YAML (``configs/crosscoder/*.yaml``), or the defaults."""
    return build(CrosscoderConfig, read_yaml(path), str(path)) if path else CrosscoderConfig()


def crosscoder_run(run_dir: str | Path, cfg: CrosscoderConfig | None = None, *,
                   model_loader: Any = None, force: bool = False,
                   token_text: Any = None) -> dict[str, Any]:
    """Train and analyse the run's crosscoder; return the content of ``crosscoder.json``."""
    from llmjp_ckpt.data.corpus import load_split
    from llmjp_ckpt.features.analyze import FeaturesConfig, default_model_loader

    cfg = cfg or CrosscoderConfig()
    rf = RunFolder(run_dir)
    saes = sae_folders(rf.root)
    steps = sorted(cfg.steps or {s for s, _, _ in saes})
    if len(steps) < 2:
        raise UserError(f"{rf.root}: a crosscoder needs at least two checkpoints (found {steps})")
    first = {s: f for s, _, f in saes}
    missing = [s for s in steps if s not in first]
    if missing:
        raise UserError(f"crosscoder config: steps {missing} have no SAE in {rf.root / 'saes'}")
    hook = read_json(first[steps[0]] / "cfg.json").get("metadata", {}).get("hook_name")
    if not hook:
        raise UserError(f"{first[steps[0]] / 'cfg.json'}: metadata.hook_name missing")
    if cfg.labels:
        cc_labels.check_inputs(rf)  # before training: the labels need the test split
    out_dir = rf.path("crosscoders", cfg.sae_id)
    out_json = rf.path("analysis", "crosscoder.json")
    record = {**dataclasses.asdict(cfg), "device": None, "steps": steps, "hook": hook}
    outputs = [out_json, out_dir] + ([rf.path("analysis", cc_labels.TABLE)] if cfg.labels else [])
    with rf.stage(STAGE, record, force=force, outputs=outputs) as st:
        if st.skipped:
            return read_json(out_json)
        loader = model_loader or default_model_loader(rf.root, FeaturesConfig(device=cfg.device),
                                                      first[steps[0]])
        models = [loader(s) for s in steps]
        train = load_split(rf.root, "train")
        tokens = torch.tensor(train["input_ids"], dtype=torch.long)
        d = int(models[0].cfg.d_model)
        stream = checkpoint_stream(models, hook, tokens, cfg.batch_tokens, cfg.batch_windows, cfg.seed)
        folder = train_crosscoder(stream, len(steps), d, cfg, out_dir, [step_dir(s) for s in steps])
        sae = analysis.load_crosscoder(folder)
        norms = sae.decoder_norms().numpy()
        result = analysis.summarise(norms, steps, cfg.present, cfg.absent)
        result["lineage_agreement"] = _lineage_agreement(rf, norms, sae.W_dec.detach(), steps, cfg)
        figs = analysis.figures(result, norms)
        if cfg.labels:  # language / granularity of the latents per checkpoint (crosscoders.labels)
            result["labels"], more = cc_labels.label_crosscoder(rf, folder, sae, models, hook, steps, norms,
                                                                cfg, token_text)
            figs.update(more)
        del models
        result["figures"] = write_figures(figs, rf.path("analysis", "figures"), png=False)
        atomic.write_json(out_json, result)
        st.info["classes"] = result["classes"]
    return result


def _lineage_agreement(rf: RunFolder, norms: Any, W_dec: torch.Tensor, steps: list[int],
                       cfg: CrosscoderConfig) -> dict[str, Any]:
    """Agreement with every SAE family's lineages (when the compare stage has run)."""
    import pandas as pd
    from safetensors.torch import load_file

    out: dict[str, Any] = {}
    for path in sorted(rf.path("analysis", "lineages").glob("*.parquet")):
        sae_id = path.stem
        decs = {}
        for s in steps:
            w = rf.path("saes", step_dir(s), sae_id, "sae_weights.safetensors")
            if w.is_file():
                decs[s] = load_file(str(w))["W_dec"].float()
        out[sae_id] = analysis.lineage_agreement(norms, W_dec, steps, pd.read_parquet(path), decs,
                                                 cfg.present)
    return out
