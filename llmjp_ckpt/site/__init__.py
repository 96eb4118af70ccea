"""Static HTML: sae-dashboard feature pages and the cross-checkpoint site under ``RUN/dashboards/``."""

from llmjp_ckpt.site.config import SiteConfig
from llmjp_ckpt.site.pages import build_site

__all__ = ["SiteConfig", "build_site"]
