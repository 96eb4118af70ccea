"""TopK SAEs for every checkpoint, trained through SAELens' MultiSAETrainingRunner.

For each checkpoint step: the model comes from :func:`llmjp_ckpt.models.adapter.load_model`
(``override_model``), the windows from RUN/data/train (``override_dataset``), and every SAE of
the config's grid sharing a learning rate is trained from one activation pass. Windows are
65 tokens with BOS first; SAELens sees ``context_size=65``, ``seqpos_slice=(1, None)`` and
``disable_concat_sequences=True``, so exactly the 64 positions after BOS are trained.
A layer sweep (``hook_layer: [6, 12, 18]``) puts every layer's SAEs of a learning rate in the
same pass: SAELens' multi-hook store caches all their hooks from one forward per batch
(``hook_names`` per SAE), and each SAE id ends in ``_L{layer}``.

Layout and safety:

- training happens in ``RUN/saes/_work/iter_XXXXXXX/lr<lr>/`` (SAELens checkpoints and
  output); a killed run resumes from the last *complete* SAELens checkpoint there;
- each finished SAE gets ``metrics.json`` and ``runner_cfg.json`` beside SAELens' files and is
  then renamed whole to ``RUN/saes/iter_XXXXXXX/<sae_id>/``: a folder under that name is
  always complete;
- an SAE whose folder records the same config hash is skipped; a changed config retrains it.

Seeds: the config's ``seed`` seeds random / NumPy / torch (:mod:`llmjp_ckpt.seeding`) before
each SAE's initialisation (seed derived from ``(seed, step, sae_id)``), before the
geometric-median sample and before the activation store is built and shuffles (``(seed,
step)``), so one checkpoint retrained alone gives the same weights as in a full run (on CPU);
a run resumed from a periodic SAELens checkpoint also restores the mixing buffer and the
random state (:mod:`llmjp_ckpt.saes.resume`) and ends bit-identical to an uninterrupted one.
The grid's ``saes.seeds`` add seed-s twins (``<sae_id>_s<s>``, init seed derived from that id)
to the same pass: they see the very same activation stream (one store, one data seed).
"""

from __future__ import annotations

import errno
import json
import logging
import shutil
import time
from collections.abc import Collection, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from llmjp_ckpt import atomic
from llmjp_ckpt.devices import without_runtime
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
        "model": without_runtime(asdict(cfg.model)) | {"steps": None}, "step": step, "hook_layer": cfg.layer_of(spec),
        "spec": spec.hash_fields(), "sae_options": cfg.sae_options, "runner": cfg.runner_fields(),
        "data": data_info, "warm_start": cfg.warm_start, "metrics": asdict(cfg.metrics),
        "seed": cfg.seed,
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
        complete = all(
            (ckpt / name / "trainer_state.pt").is_file()
            and (ckpt / name / "sae_weights.safetensors").is_file()
            for name in names
        )
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
    from llmjp_ckpt.devices import check_device, setup, torch_dtype
    from llmjp_ckpt.models.adapter import load_model

    dtype = torch_dtype(cfg.model.dtype, "model.dtype")
    setup(check_device(cfg.model.device, "model.device"))
    return load_model(cfg.model.source, step, checkpoint_root=cfg.model.checkpoint_root,
                      device=cfg.model.device, dtype=dtype, trust_pickle=cfg.model.trust_pickle)


def _sae_config(cfg: TrainConfig, spec: SaeSpec, d_model: int, meta: dict[str, Any]) -> Any:
    from llmjp_ckpt.saes.normalisation import TokenNormTopKTrainingSAEConfig

    d_sae = spec.expansion * d_model
    if spec.k > d_sae:
        raise UserError(
            f"saes.k={spec.k} > d_sae={d_sae} (expansion {spec.expansion} x d_model {d_model}): expected k <= d_sae"
        )
    sae_cfg = TokenNormTopKTrainingSAEConfig(
        d_in=d_model, d_sae=d_sae, k=spec.k, normalisation=spec.normalisation,
        device=cfg.model.device, dtype="float32", **cfg.sae_options,  # fp32 SAE weights always
    )
    for key, value in meta.items():
        sae_cfg.metadata[key] = value
    return sae_cfg


def layer_group(spec: SaeSpec) -> str:
    """A sweep SAE's id without its layer (seed twins keep their ``_s{seed}``): the SAEs of one
    grid cell at every layer share it (:mod:`llmjp_ckpt.compare.layers`)."""
    return spec.base_id.removesuffix(f"_L{spec.layer}") + (f"_s{spec.seed}" if spec.seed else "")


def init_seed(cfg: TrainConfig, step: int | None, sae_id: str) -> int:
    """The seed set before initialising one SAE."""
    from llmjp_ckpt.seeding import derive_seed

    return derive_seed(cfg.seed, "init", step, sae_id)


def data_seed(cfg: TrainConfig, step: int | None) -> int:
    """The seed set before the median sample and the activation store of one checkpoint."""
    from llmjp_ckpt.seeding import derive_seed

    return derive_seed(cfg.seed, "data", step)


def median_sample(model: Any, train: Any, hook: str, layer_index: int, n_tokens: int, seed: int,
                  batch_windows: int = 32) -> torch.Tensor:
    """``n_tokens`` trained-position activations [n, d_model] of seeded-random train windows."""
    per_window = CONTEXT_SIZE - 1
    n_windows = min(len(train), -(-n_tokens // per_window))
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(train), generator=g)[:n_windows].sort().values.tolist()
    device = next(model.parameters()).device
    out = []
    with torch.no_grad():
        for i in range(0, len(idx), batch_windows):
            rows = train[idx[i:i + batch_windows]]["input_ids"]
            tokens = torch.tensor(rows, dtype=torch.long, device=device)
            _, cache = model.run_with_cache(tokens, names_filter=[hook],
                                            stop_at_layer=layer_index + 1)
            out.append(cache[hook][:, 1:, :].reshape(-1, cache[hook].shape[-1]))
    return torch.cat(out)[:n_tokens]


def fresh_saes(cfg: TrainConfig, step: int | None, sae_cfgs: dict[str, Any], model: Any, train: Any,
               hooks: dict[str, tuple[str, int]]) -> dict[str, Any]:
    """Training SAEs initialised under their own seeds (b_dec at the geometric median if asked).

    ``hooks``: each SAE's ``(hook name, 0-based block)``; one median sample per hook."""
    from sae_lens.registry import get_sae_training_class

    from llmjp_ckpt.seeding import seed_everything

    samples: dict[str, torch.Tensor] = {}
    for hook, block in dict.fromkeys(hooks[sid] for sid in sae_cfgs):
        need = [c.b_dec_init_tokens for sid, c in sae_cfgs.items()
                if c.b_dec_init == "geometric_median" and hooks[sid][0] == hook]
        if need:
            seed_everything(data_seed(cfg, step))
            samples[hook] = median_sample(model, train, hook, block, max(need), data_seed(cfg, step))
    out = {}
    for sae_id, sae_cfg in sae_cfgs.items():
        seed_everything(init_seed(cfg, step, sae_id))
        cls, _ = get_sae_training_class(sae_cfg.architecture())
        sae = cls(sae_cfg)
        sample = samples.get(hooks[sae_id][0])
        if sample is not None and sae_cfg.b_dec_init == "geometric_median":
            sae.init_b_dec_geometric_median(sample[:sae_cfg.b_dec_init_tokens])
        out[sae_id] = sae
    return out


def _warm_saes(
    cfg: TrainConfig, run: Path, steps: list[int | None], step: int | None, sae_cfgs: dict[str, Any]
) -> dict[str, Any] | None:
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
                model: Any, hooks: dict[str, tuple[str, int]], hashes: dict[str, str], data_info: str) -> list[Path]:
    """Train the SAEs of one learning rate at one step from one activation pass; finalise them.

    ``hooks``: each SAE's ``(hook name, 0-based block)``. SAEs at several hooks (a layer sweep)
    share the pass: SAELens' multi-hook store caches every hook from one forward per batch."""
    import datasets
    from sae_lens import LoggingConfig, MultiSAETrainingRunner, MultiSAETrainingRunnerConfig
    from sae_lens.saes.sae import SAE

    from llmjp_ckpt.saes.dead import write_firing_counts
    from llmjp_ckpt.saes.metrics import count_firings, evaluate
    from llmjp_ckpt.saes.resume import install as install_exact_resume
    from llmjp_ckpt.seeding import seed_everything

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
        "model_name": cfg.model.source, "checkpoint_step": step,
        "context_size": CONTEXT_SIZE, "trained_positions": CONTEXT_SIZE - 1, "data_path": str(data_dir(cfg, run)),
        "data_info": data_info,
    }
    sae_cfgs = {
        s.sae_id: _sae_config(cfg, s, d_model, meta_common | {
            "hook_name": hooks[s.sae_id][0], "hook_layer": cfg.layer_of(s),
            **({} if s.layer is None else {"layer_group": layer_group(s)}),  # compare.layers
            "normalisation": s.normalisation, "llmjp_config_hash": hashes[s.sae_id], "sae_id": s.sae_id,
            "sae_seed": s.seed, "seed_group": s.base_id,  # the seed baseline (compare.seeds)
            "warm_start_from": (steps[steps.index(step) - 1] if cfg.warm_start and steps.index(step) else None),
            "seed": cfg.seed, "init_seed": init_seed(cfg, step, s.sae_id),
            "data_seed": data_seed(cfg, step),
            "b_dec_init": cfg.sae_options.get("b_dec_init", "zeros"),
            "tied_encoder_init": bool(cfg.sae_options.get("tied_encoder_init", False)),
        })
        for s in specs
    }
    fields = cfg.runner_fields()
    if cfg.model.sae_autocast:  # bf16 autocast of the SAE step; fp32 weights and Adam state
        fields["autocast"] = True
    logger_cfg = LoggingConfig(**fields.pop("logger"))
    resume = latest_checkpoint(work, list(sae_cfgs))
    runner_cfg = MultiSAETrainingRunnerConfig(
        saes=sae_cfgs, hook_names={sid: hooks[sid][0] for sid in sae_cfgs}, model_name=cfg.model.source,
        dataset_path=str(data_dir(cfg, run) / "train"),
        context_size=CONTEXT_SIZE, seqpos_slice=SEQPOS_SLICE, disable_concat_sequences=True, lr=lr,
        device=cfg.model.device, dtype="float32", streaming=False, logger=logger_cfg,
        output_path=str(work / "output"), checkpoint_path=str(work / "checkpoints"),
        resume_from_checkpoint=str(resume) if resume else None, model_from_pretrained_kwargs={},
        seed=cfg.seed,
        **fields,
    )
    train = datasets.load_from_disk(str(data_dir(cfg, run) / "train")).select_columns(["input_ids"])
    override_saes = None if resume else _warm_saes(cfg, run, steps, step, sae_cfgs)
    if override_saes is None and not resume:
        override_saes = fresh_saes(cfg, step, sae_cfgs, model, train, hooks)
    # SAELens 6.54 never uses its seed field: seed the store's construction and shuffles here.
    seed_everything(data_seed(cfg, step))
    runner = MultiSAETrainingRunner(
        runner_cfg, override_dataset=train, override_model=model, override_saes=override_saes
    )
    # SAELens has no seam for checking activations: wrap its data loader on this instance so a
    # NaN/inf batch stops training with a clear message instead of a NaN SAE.
    # Exact resume (saes.resume): SAELens' mixing stream as an object whose state (buffer,
    # random state) goes into every periodic checkpoint, so a resumed run is bit-identical.
    store = runner.activations_store
    stream = install_exact_resume(runner) or store.get_multi_hook_data_loader()
    where = f"checkpoint {step_dir(step or 0)}"
    store.get_multi_hook_data_loader = lambda: finite_batches(stream, where)  # type: ignore[method-assign]
    if resume:
        log.warning("resuming from SAELens checkpoint %s", resume)
    started = time.perf_counter()
    seed_everything(data_seed(cfg, step))
    runner.run()
    train_seconds = time.perf_counter() - started

    val = datasets.load_from_disk(str(data_dir(cfg, run) / "val"))
    runner_dict = runner_cfg.to_dict()
    out = []
    for spec in specs:
        src = work / "output" / spec.sae_id
        dst = sae_dir(run, step, spec)
        sae = SAE.load_from_disk(src, device=cfg.model.device)
        hook, block = hooks[spec.sae_id]
        firing = count_firings(sae, model, val, hook, block, cfg.metrics)
        write_firing_counts(src, firing["all"].counts.numpy(), firing["all"].n_tokens)
        m = evaluate(sae, model, val, hook, block, cfg.metrics, firing)
        m |= {
            "checkpoint_step": step,
            "sae_id": spec.sae_id,
            "hook_name": hook,
            "hook_layer": cfg.layer_of(spec),
            "token_norm": spec.normalisation,
            "k": spec.k,
            "d_sae": sae.cfg.d_sae,
            "lr": lr,
            "expansion": spec.expansion,
            "resumed_from": str(resume) if resume else None,
            "train_seconds": train_seconds,
            "saes_in_pass": len(specs),
        }
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


def train_step(cfg: TrainConfig, run: Path, step: int | None, steps: list[int | None], data_info: str,
               only: Collection[str] | None = None, memory: str | None = None) -> list[Path]:
    """All SAEs of one checkpoint (or those named in ``only``: one launch job's pass); finished
    ones (same config) are skipped without loading the model."""
    specs = [s for s in cfg.specs() if only is None or s.sae_id in only]
    hashes = {s.sae_id: spec_hash(cfg, step, s, data_info) for s in specs}
    todo = [s for s in specs if not is_finished(sae_dir(run, step, s), hashes[s.sae_id])]
    done = [sae_dir(run, step, s) for s in specs if s not in todo]
    if not todo:
        log.info("%s: all %d SAEs finished with this config, skipped", step_dir(step or 0), len(specs))
        return done
    from llmjp_ckpt.saes.config import resolve_hook

    model = load_checkpoint_model(cfg, step)
    hooks = {s.sae_id: resolve_hook(cfg.layer_of(s), model.cfg.n_layers) for s in todo}
    missing = sorted({h for h, _ in hooks.values()} - set(model.hook_dict))
    if missing:
        raise UserError(f"hook_layer: {missing[0]!r}: the model has no such hook "
                        "(expected e.g. blocks.0.hook_resid_post)")
    for s in todo:  # fail before any training: K <= d_sae
        _sae_config(cfg, s, model.cfg.d_model, {})
    # The memory planner packs the SAEs of each learning rate into passes that fit the device
    # (llmjp_ckpt.saes.plan) and splits a step that does not fit whole (saes.splitstep).
    from llmjp_ckpt.saes.plan import device_memory, model_shape_of, plan
    from llmjp_ckpt.saes.splitstep import split_steps

    held = sum(p.numel() * p.element_size() for p in model.parameters())
    pl = plan(cfg, device_memory(cfg.model.device, memory, held), specs=todo, shape=model_shape_of(model))
    for ps in pl.passes:
        with split_steps({s.sae_id: s.micro_batches for s in ps.saes}):
            try:
                done += train_group(
                    cfg,
                    run,
                    step,
                    steps,
                    ps.lr,
                    ps.specs,
                    model,
                    hooks,
                    hashes,
                    data_info,
                )
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise UserError(
                        f"{run / 'saes' / step_dir(step or 0)}: no space left on device while saving SAEs: "
                        "no unfinished SAE was finalised; free space and rerun to resume"
                    ) from None
                raise
    del model
    return done


def _check_layers_before_start(cfg: TrainConfig) -> None:
    """A layer outside the model fails here, before the stage records anything, when the
    model's config.json is on disk (else when the model is loaded)."""
    from llmjp_ckpt.saes.config import check_layers_fit
    from llmjp_ckpt.saes.plan import model_shape

    try:
        shape, _ = model_shape(cfg)
    except UserError:
        return
    check_layers_fit(cfg, shape.n_layers)


def train_run(config: TrainConfig | dict[str, Any] | str | Path, run_dir: str | Path,
              device_memory: str | None = None) -> list[Path]:
    """Train every SAE of ``config`` for every checkpoint into RUN/saes/; return their folders.

    ``device_memory`` (e.g. ``"80GiB"``) bounds the plan; default: the device's free memory."""
    cfg = as_config(config)
    run = Path(run_dir)
    rf = RunFolder(run)
    data_info = _data_info(cfg, run)
    steps = steps_of(cfg)
    _check_layers_before_start(cfg)
    stage_cfg = {"config": without_runtime(asdict(cfg)), "data": data_info}
    finished = all(is_finished(sae_dir(run, st, s), spec_hash(cfg, st, s, data_info))
                   for st in steps for s in cfg.specs())
    runtime = {"device": cfg.model.device, "dtype": cfg.model.dtype, "sae_autocast": cfg.model.sae_autocast}
    with rf.stage(STAGE, stage_cfg, force=not finished, steps=steps, runtime=runtime) as stage:
        if stage.skipped:
            return [sae_dir(run, st, s) for st in steps for s in cfg.specs()]
        out: list[Path] = []
        for step in steps:
            out += train_step(cfg, run, step, steps, data_info, memory=device_memory)
        stage.info["saes"] = [str(p.relative_to(run)) for p in out]
        stage.info["seed"] = cfg.seed
    return out
