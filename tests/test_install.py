"""The wheel, installed non-editable into a fresh venv, carries its registry and configs.

Slow tier (CI runs it through ``make test``). The fresh venv gets the dependencies by reusing the
project venv's site-packages through a filtered view that leaves out this package's own (editable)
install, so nothing is downloaded and the only ``llmjp_ckpt`` it can import is the wheel's. Every
command runs from an empty folder, where no ``configs/`` exists.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.model_builders import build_checkpoints, build_tokenizer, standin_registry

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
OURS = ("llmjp_ckpt", "__editable__", "__editable___llmjp_ckpt")


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 300) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)
    assert proc.returncode == 0, f"{cmd} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _deps_view(dest: Path) -> Path:
    """The project venv's site-packages as symlinks, without this package's own entries."""
    dest.mkdir()
    dirs = {*site.getsitepackages(), sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    for sp in dirs:
        for entry in sorted(Path(sp).iterdir()) if Path(sp).is_dir() else []:
            if entry.name.startswith(OURS) or (dest / entry.name).exists():
                continue
            (dest / entry.name).symlink_to(entry)
    return dest


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, object]:
    """A fresh venv holding the wheel (not editable), a tiny checkpoint root and a clean env."""
    base = tmp_path_factory.mktemp("install")
    wheels, src = base / "wheels", base / "src"
    # a copy of what the wheel is built from, so no stale build/ folder of the clone leaks in
    shutil.copytree(REPO / "llmjp_ckpt", src / "llmjp_ckpt",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    # --no-build-isolation: build with the project venv's setuptools (offline, seconds)
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
          "-w", str(wheels), str(src)], base, dict(os.environ))
    (wheel,) = wheels.glob("llmjp_ckpt-*.whl")
    venv = base / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], base, dict(os.environ))
    py = venv / "bin" / "python"
    code = "import sysconfig; print(sysconfig.get_path('purelib'))"
    purelib = subprocess.run([str(py), "-c", code], capture_output=True, text=True,
                             check=True).stdout.strip()
    # addsitedir (not a bare path) so the dependencies' own .pth files are processed too
    view = _deps_view(base / "deps")
    pth = f"import site; site.addsitedir({str(view)!r})\n"
    (Path(purelib) / "_project_deps.pth").write_text(pth, encoding="utf-8")
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps",
          "--no-index", str(wheel)], base, dict(os.environ))
    root = build_checkpoints(base / "ckpts", [0, 10], build_tokenizer(base / "tok"))
    cwd = base / "empty"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "LLMJP_CKPT_ROOT", "LLMJP_CKPT_REGISTRY", "VIRTUAL_ENV")}
    env |= {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONNOUSERSITE": "1"}
    return {"venv": venv, "py": py, "purelib": Path(purelib), "root": root, "cwd": cwd, "env": env,
            "wheel": wheel}


def test_wheel_ships_configs_and_registry(installed):
    pkg = installed["purelib"] / "llmjp_ckpt"
    for rel in ("configs/models/llm-jp-3.yaml", "configs/models/llmjp-toy.yaml",
                "configs/paper/sae.yaml", "configs/data/paper.yaml", "configs/demo/train.yaml"):
        assert (pkg / rel).is_file(), rel
    assert not (pkg / "configs").is_symlink()
    assert not (installed["purelib"] / "__editable___llmjp_ckpt_0_1_0_finder.py").exists()


def test_checkpoints_command_from_installed_copy(installed):
    out = _run([str(installed["venv"] / "bin" / "llmjp-ckpt"), "checkpoints"],
               installed["cwd"], installed["env"])
    assert "llm-jp/llm-jp-3-1.8b" in out and "llmjp-toy" in out
    assert "988240" in out and "iter_0988240" in out

    reg = installed["cwd"].parent / "user-registry"
    reg.mkdir(exist_ok=True)
    (reg / "mine.yaml").write_text(
        f"models:\n  - name: my-tiny\n    steps: discover\n    local_root: {installed['root']}\n",
        encoding="utf-8")
    env = installed["env"] | {"LLMJP_CKPT_REGISTRY": str(reg)}
    out = _run([str(installed["venv"] / "bin" / "llmjp-ckpt"), "checkpoints", "--model", "my-tiny"],
               installed["cwd"], env)
    assert f"found {installed['root'] / 'iter_0000010'}" in out


def test_from_pretrained_through_installed_copy(installed):
    code = """
import pathlib, sys
import llmjp_ckpt
from transformer_lens import HookedTransformer
from llmjp_ckpt.saes.config import TrainConfig
from llmjp_ckpt.resources import CONFIG_DIR

here = pathlib.Path(llmjp_ckpt.__file__).resolve()
assert here.is_relative_to(pathlib.Path(sys.prefix).resolve()), here
assert CONFIG_DIR.is_relative_to(pathlib.Path(sys.prefix).resolve()), CONFIG_DIR
model = HookedTransformer.from_pretrained_no_processing("llm-jp/llm-jp-3-1.8b", checkpoint_value=10)
assert model.cfg.checkpoint_value == 10 and model.cfg.n_layers == 2, model.cfg
ids = model.to_tokens("京都の猫")
assert ids[0, 0].item() == model.tokenizer.bos_token_id
print("logits", tuple(model(ids).shape))
for name in ("paper/sae.yaml", "configs/paper/sae.yaml"):
    assert TrainConfig.from_yaml(name).model.source == "llm-jp/llm-jp-3-1.8b"
print("ok", here)
"""
    standin = standin_registry(installed["cwd"].parent / "standin")  # tiny: no 1.8b shape
    env = installed["env"] | {"LLMJP_CKPT_ROOT": str(installed["root"]), "LLMJP_CKPT_REGISTRY": str(standin)}
    out = _run([str(installed["py"]), "-c", code], installed["cwd"], env)
    assert "ok " in out and "logits (1," in out
