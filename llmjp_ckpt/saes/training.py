"""TopK SAEs for every checkpoint, trained through SAELens' MultiSAETrainingRunner.

For each checkpoint step: the model comes from :func:`llmjp_ckpt.models.adapter.load_model`
(``override_model``), the windows from RUN/data/train (``override_dataset``), and every SAE of
the config's grid sharing a learning rate is trained from one activation pass. Windows are
65 tokens with BOS first; SAELens sees ``context_size=65``, ``seqpos_slice=(1, None)`` and
``disable_concat_sequences=True``, so exactly the 64 positions after BOS are trained.

Layout and safety:

- training happens in ``RUN/saes/_work/iter_XXXXXXX/lr<lr>/`` (SAELens checkpoints and
  output); a killed run resumes from the last *complete* SAELens checkpoint there;
- each finished SAE gets ``metrics.json`` and ``runner_cfg.json`` beside SAELens' files and is
  then renamed whole to ``RUN/saes/iter_XXXXXXX/<sae_id>/``: a folder under that name is
  always complete;
- an SAE whose folder records the same config hash is skipped; a changed config retrains it.
"""

from __future__ import annotations

import errno
import json
import logging
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from llmjp_ckpt import atomic
from llmjp_ckpt.errors import UserError
from llmjp_ckpt.runfolder import RunFolder, config_hash, step_dir
from llmjp_ckpt.saes.config import SaeSpec, TrainConfig

log = logging.getLogger(__name__)
STAGE = "train"
CONTEXT_SIZE = 65
SEQPOS_SLICE = (1, None)
WORK = "_work"
METRICS_FILE = "metrics.json"


def as_config(config: TrainConfig | dict[str, Any] | str | Path) -> TrainConfig:
    """Accept a :class:`TrainConfig`, a mapping or a YAML path."""
    if isinstance(config, TrainConfig):
        return config
    if isinstance(config, dict):
        return TrainConfig.from_dict(config)
    return TrainConfig.from_yaml(config)


def data_dir(cfg: TrainConfig, run: Path) -> Path:
    path = Path(cfg.data)
    return path if path.is_absolute() else run / path


def steps_of(cfg: TrainConfig) -> list[int | None]:
    """The checkpoint steps to train: the listed ones, or those found under the root ("all" / "last")."""
    st = cfg.model.steps
    if st is None:
        return [None]
    if isinstance(st, list):
        return list(st)
    from llmjp_ckpt.models.registry import discover_steps

    root = cfg.model.checkpoint_root or cfg.model.source
    found = discover_steps(Path(root))
    if not found:
        raise UserError(f"model.steps={st!r}: no iter_XXXXXXX checkpoints under {root}")
    return list(found) if st == "all" else [found[-1]]


def sae_dir(run: Path, step: int | None, spec: SaeSpec) -> Path:
    return run / "saes" / step_dir(step or 0) / spec.sae_id


def spec_hash(cfg: TrainConfig, step: int | None, spec: SaeSpec, data_info: str) -> str:
    """What one SAE depends on: model, step, hook, its own fields, runner, data, warm start."""
    return config_hash({
        "model": asdict(cfg.model) | {"steps": None}, "step": step, "hook_layer": cfg.hook_layer,
        "spec": asdict(spec), "sae_options": cfg.sae_options, "runner": cfg.runner_fields(),
        "data": data_info, "warm_start": cfg.warm_start, "metrics": asdict(cfg.metrics),
    })


def is_finished(path: Path, h: str) -> bool:
    """True when ``path`` holds a finished SAE trained with config hash ``h``."""
    try:
        meta = json.loads((path / "cfg.json").read_text(encoding="utf-8"))["metadata"]
    except (OSError, ValueError, KeyError):
        return False
    return meta.get("llmjp_config_hash") == h and (path / METRICS_FILE).is_file()


def latest_checkpoint(work: Path, names: list[str]) -> Path | None:
    """The newest complete SAELens checkpoint below ``work/checkpoints`` (runner_cfg.json is written last)."""
    best: tuple[int, Path] | None = None
    for cfg_file in (work / "checkpoints").glob("*/*/runner_cfg.json"):
        ckpt = cfg_file.parent
        try:
            json.loads(cfg_file.read_text(encoding="utf-8"))
            n = int(ckpt.name)
        except (ValueError, OSError):
            continue
        complete = all((ckpt / name / "trainer_state.pt").is_file() and (ckpt / name / "sae_weights.safetensors").is_file() for name in names)
        if complete and (best is None or n > best[0]):
            best = (n, ckpt)
    return best[1] if best else None


def finite_batches(batches: Iterator[dict[str, torch.Tensor]], where: str) -> Iterator[dict[str, torch.Tensor]]:
    """Pass activation batches through; stop with a clear error at the first NaN/inf."""
    for i, batch in enumerate(batches):
        for hook, acts in batch.items():
            bad = (~torch.isfinite(acts)).sum().item()
            if bad:
                raise UserError(
                    f"{where}: {bad} NaN/inf activation values (of {acts.numel()}) at {hook} in training batch {i}: "
                    "training stopped; check the checkpoint's weights"
                )
        yield batch


def load_checkpoint_model(cfg: TrainConfig, step: int | None) -> Any:
    from llmjp_ckpt.models.adapter import load_model

    dtype = getattr(torch, cfg.model.dtype, None)
    if not isinstance(dtype, torch.dtype):
        raise UserError(f"model.dtype={cfg.model.dtype!r}: expected a torch dtype name such as float32")
    return load_model(cfg.model.source, step, checkpoint_root=cfg.model.checkpoint_root, device=cfg.model.device, dtype=dtype)


def _sae_config(cfg: TrainConfig, spec: SaeSpec, d_model: int, meta: dict[str, Any]) -> Any:
    from llmjp_ckpt.saes.normalisation import TokenNormTopKTrainingSAEConfig

    d_sae = spec.expansion * d_model
    if spec.k > d_sae:
        raise UserError(f"saes.k={spec.k} > d_sae={d_sae} (expansion {spec.expansion} x d_model {d_model}): expected k <= d_sae")
    sae_cfg = TokenNormTopKTrainingSAEConfig(
        d_in=d_model, d_sae=d_sae, k=spec.k, token_norm=spec.normalisation,
        device=cfg.model.device, dtype=cfg.model.dtype, **cfg.sae_options,
    )
    for key, value in meta.items():
        sae_cfg.metadata[key] = value
    return sae_cfg


def _warm_saes(cfg: TrainConfig, run: Path, steps: list[int | None], step: int | None, sae_cfgs: dict[str, Any]) -> dict[str, Any] | None:
    """Training SAEs initialised from the previous checkpoint's SAEs (warm start), or None."""
    if not cfg.warm_start or steps.index(step) == 0:
        return None
    from sae_lens.registry import get_sae_training_class

    prev = steps[steps.index(step) - 1]
    out = {}
    for sae_id, sae_cfg in sae_cfgs.items():
        src = run / "saes" / step_dir(prev or 0) / sae_id
        if not (src / "sae_weights.safetensors").is_file():
            raise UserError(f"warm_start: {src} is missing: train checkpoint {prev} first")
        cls, _ = get_sae_training_class(sae_cfg.architecture())
        sae = cls(sae_cfg)
        sae.load_weights_from_checkpoint(src)
        out[sae_id] = sae
    return out


def train_group(cfg: TrainConfig, run: Path, step: int | None, steps: list[int | None], lr: float, specs: list[SaeSpec],
                model: Any, hook: str, layer_index: int, hashes: dict[str, str], data_info: str) -> list[Path]:
    """Train the SAEs of one learning rate at one step from one activation pass; finalise them."""
    import datasets
    from sae_lens import LoggingConfig, MultiSAETrainingRunner, MultiSAETrainingRunnerConfig
    from sae_lens.saes.sae import SAE

    from llmjp_ckpt.saes.metrics import evaluate

    datasets.config.TORCHVISION_AVAILABLE = False  # see STACK-NOTES: torchvision 0.29 breaks row access
    group_hash = config_hash(sorted(hashes[s.sae_id] for s in specs))
    work = run / "saes" / WORK / step_dir(step or 0) / f"lr{lr:g}-{group_hash[:8]}"
    stamp = work / "config_hash.txt"
    if work.exists() and (not stamp.is_file() or stamp.read_text() != group_hash):
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    atomic.write_text(stamp, group_hash)

    d_model = model.cfg.d_model
    meta_common = {
        "model_name": cfg.model.source, "checkpoint_step": step, "hook_name": hook, "hook_layer": cfg.hook_layer,
        "context_size": CONTEXT_SIZE, "trained_positions": CONTEXT_SIZE - 1, "data_path": str(data_dir(cfg, run)),
        "data_info": data_info,
    }
    sae_cfgs = {
        s.sae_id: _sae_config(cfg, s, d_model, meta_common | {
            "token_norm": s.normalisation, "llmjp_config_hash": hashes[s.sae_id], "sae_id": s.sae_id,
            "warm_start_from": (steps[steps.index(step) - 1] if cfg.warm_start and steps.index(step) else None),
        })
        for s in specs
    }
    fields = cfg.runner_fields()
    logger_cfg = LoggingConfig(**fields.pop("logger"))
    resume = latest_checkpoint(work, list(sae_cfgs))
    runner_cfg = MultiSAETrainingRunnerConfig(
        saes=sae_cfgs, hook_names=hook, model_name=cfg.model.source, dataset_path=str(data_dir(cfg, run) / "train"),
        context_size=CONTEXT_SIZE, seqpos_slice=SEQPOS_SLICE, disable_concat_sequences=True, lr=lr,
        device=cfg.model.device, dtype=cfg.model.dtype, streaming=False, logger=logger_cfg,
        output_path=str(work / "output"), checkpoint_path=str(work / "checkpoints"),
        resume_from_checkpoint=str(resume) if resume else None, model_from_pretrained_kwargs={}, **fields,
    )
    train = datasets.load_from_disk(str(data_dir(cfg, run) / "train")).select_columns(["input_ids"])
    override_saes = None if resume else _warm_saes(cfg, run, steps, step, sae_cfgs)
    runner = MultiSAETrainingRunner(runner_cfg, override_dataset=train, override_model=model, override_saes=override_saes)
    # SAELens has no seam for checking activations: wrap its data loader on this instance so a
    # NaN/inf batch stops training with a clear message instead of a NaN SAE.
    store = runner.activations_store
    loader = store.get_multi_hook_data_loader
    store.get_multi_hook_data_loader = lambda: finite_batches(loader(), f"checkpoint {step_dir(step or 0)}")  # type: ignore[method-assign]
    if resume:
        log.warning("resuming from SAELens checkpoint %s", resume)
    started = time.perf_counter()
    runner.run()
    train_seconds = time.perf_counter() - started

    val = datasets.load_from_disk(str(data_dir(cfg, run) / "val"))
    runner_dict = runner_cfg.to_dict()
    out = []
    for spec in specs:
        src = work / "output" / spec.sae_id
        dst = sae_dir(run, step, spec)
        sae = SAE.load_from_disk(src, device=cfg.model.device)
        m = evaluate(sae, model, val, hook, layer_index, cfg.metrics)
        m |= {"checkpoint_step": step, "sae_id": spec.sae_id, "hook_name": hook, "token_norm": spec.normalisation,
              "k": spec.k, "d_sae": sae.cfg.d_sae, "lr": lr, "expansion": spec.expansion,
              "resumed_from": str(resume) if resume else None, "train_seconds": train_seconds, "saes_in_pass": len(specs)}
        atomic.write_json(src / METRICS_FILE, m)
        atomic.write_json(src / "runner_cfg.json", runner_dict | {"sae_id": spec.sae_id})
        atomic.replace_dir(src, dst)
        out.append(dst)
    shutil.rmtree(work, ignore_errors=True)
    for parent in (work.parent, work.parent.parent):  # drop emptied _work folders
        if parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
    return out


def _data_info(cfg: TrainConfig, run: Path) -> str:
    d = data_dir(cfg, run)
    for split in ("train", "val"):
        if not (d / split).is_dir():
            raise UserError(f"{d / split}: prepared split not found: run `llmjp-ckpt prepare-data` first")
    info = d / "data_info.json"
    return config_hash(info.read_text(encoding="utf-8")) if info.is_file() else "unknown"


def train_step(cfg: TrainConfig, run: Path, step: int | None, steps: list[int | None], data_info: str) -> list[Path]:
    """All SAEs of one checkpoint; finished ones (same config) are skipped without loading the model."""
    specs = cfg.specs()
    hashes = {s.sae_id: spec_hash(cfg, step, s, data_info) for s in specs}
    todo = [s for s in specs if not is_finished(sae_dir(run, step, s), hashes[s.sae_id])]
    done = [sae_dir(run, step, s) for s in specs if s not in todo]
    if not todo:
        log.info("%s: all %d SAEs finished with this config, skipped", step_dir(step or 0), len(specs))
        return done
    from llmjp_ckpt.models.adapter import study_layer_hook

    model = load_checkpoint_model(cfg, step)
    hook = study_layer_hook(cfg.hook_layer, model.cfg.n_layers)
    for s in todo:  # fail before any training: K <= d_sae
        _sae_config(cfg, s, model.cfg.d_model, {})
    by_lr: dict[float, list[SaeSpec]] = {}
    for s in todo:
        by_lr.setdefault(s.lr, []).append(s)
    size = cfg.max_saes_per_pass or len(todo)
    for lr, group in by_lr.items():
        for i in range(0, len(group), size):
            try:
                done += train_group(cfg, run, step, steps, lr, group[i:i + size], model, hook, cfg.hook_layer - 1, hashes, data_info)
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise UserError(
                        f"{run / 'saes' / step_dir(step or 0)}: no space left on device while saving SAEs: "
                        "no unfinished SAE was finalised; free space and rerun to resume"
                    ) from None
                raise
    del model
    return done


def train_run(config: TrainConfig | dict[str, Any] | str | Path, run_dir: str | Path) -> list[Path]:
    """Train every SAE of ``config`` for every checkpoint into RUN/saes/; return their folders."""
    cfg = as_config(config)
    run = Path(run_dir)
    rf = RunFolder(run)
    data_info = _data_info(cfg, run)
    steps = steps_of(cfg)
    stage_cfg = {"config": asdict(cfg), "data": data_info}
    finished = all(is_finished(sae_dir(run, st, s), spec_hash(cfg, st, s, data_info))
                   for st in steps for s in cfg.specs())
    with rf.stage(STAGE, stage_cfg, force=not finished, steps=steps) as stage:
        if stage.skipped:
            return [sae_dir(run, st, s) for st in steps for s in cfg.specs()]
        out: list[Path] = []
        for step in steps:
            out += train_step(cfg, run, step, steps, data_info)
        stage.info["saes"] = [str(p.relative_to(run)) for p in out]
    return out
