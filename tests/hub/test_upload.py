"""Hub upload, offline: a fake HfApi records the calls; the uploaded layout loads from a local
HF cache with SAE.from_pretrained; the token never reaches a file or a log."""

from __future__ import annotations

import fnmatch
import logging
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from llmjp_ckpt.errors import UserError
from tests.feature_builders import build_run

REPO = "someone/llmjp-toy-saes"
TOKEN = "hf_FAKEtokenDoNotLeak0123456789abcdef"


class FakeHub:
    """Stands in for the Hub: records every call and keeps the uploaded files in memory."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.repos: dict[str, bool] = {}  # repo -> private
        self.files: dict[str, bytes] = {}

    def api_class(hub) -> type:
        class FakeApi:
            def __init__(self, *a: Any, **kw: Any) -> None:
                pass

            def repo_info(self, repo_id: str, **kw: Any) -> dict:
                from huggingface_hub.utils import RepositoryNotFoundError

                hub.calls.append(("repo_info", {"repo_id": repo_id}))
                if repo_id not in hub.repos:
                    raise RepositoryNotFoundError(f"{repo_id} not found")
                return {"id": repo_id}

            def create_repo(self, repo_id: str, private: bool = False, exist_ok: bool = False, **kw: Any) -> None:
                hub.create_repo(repo_id, private=private, exist_ok=exist_ok)

            def upload_folder(self, folder_path: Path, path_in_repo: str, repo_id: str,
                              allow_patterns: list[str], **kw: Any) -> None:
                assert repo_id in hub.repos
                hub.calls.append(("upload_folder", {"path_in_repo": path_in_repo, "repo_id": repo_id}))
                for f in sorted(Path(folder_path).iterdir()):
                    if any(fnmatch.fnmatch(f.name, p) for p in allow_patterns):
                        hub.files[f"{path_in_repo}/{f.name}"] = f.read_bytes()

            def upload_file(self, path_or_fileobj: Any, path_in_repo: str, repo_id: str, **kw: Any) -> None:
                hub.calls.append(("upload_file", {"path_in_repo": path_in_repo}))
                hub.files[path_in_repo] = path_or_fileobj.read()

            def create_commit(self, repo_id: str, operations: list, **kw: Any) -> None:
                assert repo_id in hub.repos
                hub.calls.append(("create_commit", {"paths": [op.path_in_repo for op in operations]}))
                for op in operations:
                    src = op.path_or_fileobj
                    hub.files[op.path_in_repo] = Path(src).read_bytes() if isinstance(src, str) else bytes(src)

        return FakeApi

    def create_repo(self, repo_id: str, private: bool = False, exist_ok: bool = False, **kw: Any) -> None:
        self.calls.append(("create_repo", {"repo_id": repo_id, "private": private}))
        self.repos.setdefault(repo_id, private)

    def materialise(self, cache: Path, repo_id: str) -> None:
        """Lay the uploaded files out as a Hugging Face hub cache snapshot."""
        base = cache / f"models--{repo_id.replace('/', '--')}"
        commit = "0" * 40
        (base / "refs").mkdir(parents=True)
        (base / "refs" / "main").write_text(commit)
        for name, data in self.files.items():
            p = base / "snapshots" / commit / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)


@pytest.fixture()
def hub(monkeypatch: pytest.MonkeyPatch) -> FakeHub:
    import sae_lens.training.upload_saes_to_huggingface as sl_up

    import llmjp_ckpt.hub.upload as up

    fake = FakeHub()
    monkeypatch.setattr(sl_up, "HfApi", fake.api_class())
    monkeypatch.setattr(sl_up, "create_repo", fake.create_repo)
    monkeypatch.setattr(sl_up, "_repo_file_exists", lambda *a, **k: False)
    monkeypatch.setattr(up, "HfApi", fake.api_class())
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    return fake


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_run(tmp_path_factory.mktemp("up") / "run", steps=(10, 100))


def test_upload_private_one_folder_per_sae_and_card(hub: FakeHub, run_dir: Path, tmp_path: Path) -> None:
    from llmjp_ckpt.hub.upload import upload_run

    reg = tmp_path / "configs" / "pretrained_saes.yaml"
    upload_run(run_dir, REPO, private=True, registry_path=reg)
    names = [c[0] for c in hub.calls]
    assert names[0] == "create_repo" and hub.calls[0][1]["private"] is True
    assert names.index("create_repo") < names.index("upload_folder")
    assert names.count("create_repo") == 1 and hub.repos[REPO] is True  # SAELens did not recreate it
    folders = [c[1]["path_in_repo"] for c in hub.calls if c[0] == "upload_folder"]
    assert folders == ["iter_0000010/none", "iter_0000010/scalar", "iter_0000100/none", "iter_0000100/scalar"]
    for f in folders:
        for name in ("cfg.json", "sae_weights.safetensors", "sparsity.safetensors", "runner_cfg.json",
                     "metrics.json"):
            assert f"{f}/{name}" in hub.files
    card = hub.files["README.md"].decode("utf-8")
    for needle in ("tiny", "10, 100", "blocks.0.hook_resid_post", "scalar", "| explained_variance",
                   f'SAE.from_pretrained("{REPO}", "iter_0000010/none")'):
        assert needle in card
    entry = yaml.safe_load(reg.read_text(encoding="utf-8"))[REPO]
    assert entry["repo_id"] == REPO and [s["id"] for s in entry["saes"]] == folders
    assert entry["saes"][1]["variance_explained"] == pytest.approx(0.6)


def test_public_repo_created_by_saelens(hub: FakeHub, run_dir: Path, tmp_path: Path) -> None:
    from llmjp_ckpt.hub.upload import upload_run

    upload_run(run_dir, REPO, registry_path=tmp_path / "reg.yaml")
    creates = [c for c in hub.calls if c[0] == "create_repo"]
    assert creates == [("create_repo", {"repo_id": REPO, "private": False})]


def test_uploaded_layout_loads_with_from_pretrained(hub: FakeHub, run_dir: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants as hc
    from sae_lens import SAE

    import llmjp_ckpt  # noqa: F401  registers the token-norm architecture
    from llmjp_ckpt.hub.upload import upload_run

    upload_run(run_dir, REPO, registry_path=tmp_path / "reg.yaml")
    cache = tmp_path / "hf_home" / "hub"
    hub.materialise(cache, REPO)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(cache))  # read at call time by hf_hub_download
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    sae = SAE.from_pretrained(REPO, "iter_0000100/scalar")
    local = SAE.load_from_disk(str(run_dir / "saes" / "iter_0000100" / "scalar"))
    assert type(sae) is type(local) and sae.cfg.normalisation == "scalar"
    assert torch.equal(sae.W_enc, local.W_enc) and torch.equal(sae.b_dec, local.b_dec)
    x = torch.randn(3, 32)
    assert torch.equal(sae.encode(x), local.encode(x))


def test_dry_run_prints_plan_and_uploads_nothing(hub: FakeHub, run_dir: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from llmjp_ckpt.cli import main

    assert main(["upload", "--run", str(run_dir), "--repo-id", REPO, "--dry-run", "--private"]) == 0
    out = capsys.readouterr().out
    assert f"hf://{REPO}/iter_0000010/none/sae_weights.safetensors" in out
    assert f"hf://{REPO}/iter_0000100/scalar/metrics.json" in out and "README.md" in out
    assert "private" in out and hub.calls == []


def test_token_never_written_or_logged(hub: FakeHub, run_dir: Path, tmp_path: Path,
                                       caplog: pytest.LogCaptureFixture,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    from llmjp_ckpt.hub.upload import upload_run

    caplog.set_level(logging.DEBUG)
    reg = tmp_path / "reg.yaml"
    upload_run(run_dir, REPO, private=True, registry_path=reg)
    upload_run(run_dir, REPO, dry_run=True, registry_path=reg)
    captured = capsys.readouterr()
    texts = [caplog.text, captured.out, captured.err, *(v.decode("latin-1") for v in hub.files.values())]
    files = [p for p in [*run_dir.rglob("*"), *tmp_path.rglob("*")] if p.is_file()]
    assert len(files) > 20
    texts += [p.read_bytes().decode("latin-1") for p in files]
    assert all(TOKEN not in t for t in texts)
    assert caplog.text  # something was logged, and none of it is the token


def test_bad_input(hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from llmjp_ckpt.hub.upload import upload_run

    with pytest.raises(UserError, match="owner/name"):
        upload_run(tmp_path, "no-slash")
    with pytest.raises(UserError, match="no SAEs found"):
        upload_run(tmp_path, REPO)
    run = build_run(tmp_path / "run", steps=(10,), sae_ids=("none",))
    (run / "saes" / "iter_0000010" / "none" / "metrics.json").unlink()
    with pytest.raises(UserError, match="missing metrics.json"):
        upload_run(run, REPO, dry_run=True)
    (run / "saes" / "iter_0000010" / "none" / "metrics.json").write_text("{oops")
    with pytest.raises(UserError, match="not valid UTF-8 JSON"):
        upload_run(run, REPO, dry_run=True)
    (run / "saes" / "iter_0000010" / "none" / "metrics.json").write_text("{}")
    monkeypatch.delenv("HF_TOKEN")
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    with pytest.raises(UserError, match="HF_TOKEN"):
        upload_run(run, REPO, registry_path=tmp_path / "r.yaml")
    assert hub.calls == []


def test_registry_entry_goes_to_the_run_never_the_package(hub: FakeHub, run_dir: Path,
                                                          tmp_path: Path) -> None:
    import shutil

    import llmjp_ckpt
    from llmjp_ckpt.cli import main

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    package = Path(llmjp_ckpt.__file__).resolve().parent
    before = sorted(package.rglob("pretrained_saes.yaml"))
    assert main(["upload", "--run", str(run), "--repo-id", REPO]) == 0
    assert REPO in yaml.safe_load((run / "pretrained_saes.yaml").read_text(encoding="utf-8"))
    assert main(["upload", "--run", str(run), "--repo-id", REPO,
                 "--registry", str(tmp_path / "elsewhere.yaml")]) == 0
    assert (tmp_path / "elsewhere.yaml").is_file()
    assert sorted(package.rglob("pretrained_saes.yaml")) == before


def test_firing_counts_uploaded_and_identical(hub: FakeHub, run_dir: Path, tmp_path: Path) -> None:
    """The dead-latent counts (saes.dead) go up beside each SAE, byte for byte (issue 15)."""
    from llmjp_ckpt.hub.upload import collect_saes, upload_plan, upload_run
    from llmjp_ckpt.saes.dead import FIRING_FILE

    plan = upload_run(run_dir, REPO, registry_path=tmp_path / "reg.yaml")
    for step in ("iter_0000010", "iter_0000100"):
        for sae_id in ("none", "scalar"):
            local = run_dir / "saes" / step / sae_id / FIRING_FILE
            assert hub.files[f"{step}/{sae_id}/{FIRING_FILE}"] == local.read_bytes()
            assert (str(local), f"hf://{REPO}/{step}/{sae_id}/{FIRING_FILE}") in plan
    commit = next(c[1]["paths"] for c in hub.calls if c[0] == "create_commit")
    assert f"iter_0000010/none/{FIRING_FILE}" in commit
    assert FIRING_FILE in hub.files["README.md"].decode("utf-8")
    assert plan == upload_plan(collect_saes(run_dir), REPO)  # the dry run lists the same files
