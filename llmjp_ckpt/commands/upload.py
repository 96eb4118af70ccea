"""``llmjp-ckpt upload``: every SAE of a run to a Hugging Face Hub repo through SAELens."""

from __future__ import annotations

import argparse

HELP = "Upload every SAE under RUN/saes to a Hugging Face Hub repo (SAELens format, one folder per iter_XXXXXXX/<id>)."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="run folder (with saes/)")
    p.add_argument("--repo-id", required=True, help="Hub repo, e.g. user/llm-jp-3-1.8b-saes")
    p.add_argument("--private", action="store_true", help="create the repo private before uploading")
    p.add_argument("--dry-run", action="store_true", help="print each file and its destination; upload nothing")
    p.add_argument("--revision", default="main", help="branch to upload to")
    p.add_argument("--registry", default=None,
                   help="SAELens pretrained_saes.yaml to merge the release into "
                        "(default: RUN/pretrained_saes.yaml)")


def run(args: argparse.Namespace) -> int:
    from llmjp_ckpt.hub.upload import upload_run

    upload_run(args.run, args.repo_id, private=args.private, dry_run=args.dry_run,
               revision=args.revision, registry_path=args.registry)
    return 0
