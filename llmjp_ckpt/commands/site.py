"""``llmjp-ckpt site``: the static site under RUN/dashboards/ (offline, escaped, UTF-8)."""

from __future__ import annotations

import argparse

from llmjp_ckpt import devices

HELP = "Build the offline HTML site RUN/dashboards/index.html: findings, transitions, feature browsers and catalogs."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="run folder (RUN) with saes/, features/ and analysis/")
    p.add_argument("--config", default=None, help="configs/site.yaml (defaults when omitted)")
    p.add_argument("--tokenizer", default=None,
                   help="tokenizer folder or .model file (default: the data stage's tokenizer)")
    p.add_argument("--no-feature-pages", action="store_true", help="skip the sae-dashboard pages (no model needed)")
    p.add_argument("--force", action="store_true", help="rebuild even if the manifest says it is current")
    devices.add_arguments(p)
    p.add_argument("--trust-pickle", action="store_true",
                   help="allow .bin/.pt model weights (unpickling runs code: trusted files only)")


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from llmjp_ckpt.site import SiteConfig, build_site
    from llmjp_ckpt.tokens import TokenText

    cfg = SiteConfig.from_yaml(args.config) if args.config else SiteConfig()
    if args.no_feature_pages:
        cfg = dataclasses.replace(cfg, feature_pages=False)
    if devices.overrides(args):
        cfg = dataclasses.replace(cfg, **devices.overrides(args))
    if args.trust_pickle:
        cfg = dataclasses.replace(cfg, trust_pickle=True)
    tt = TokenText.load(args.tokenizer) if args.tokenizer else None
    print(build_site(args.run, cfg, token_text=tt, force=args.force))
    return 0
