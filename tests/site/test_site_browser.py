"""Real-browser checks of the generated site: headless Debian chromium driven over the DevTools
protocol (``websocket-client``). Each page is opened from ``file://`` with no network; the tests
check console errors, network requests, visible text and drawn figures, take screenshots, and
check that XSS payloads in the corpus neither execute nor disappear.

Skipped (with the reason) when chromium is not installed: ``make setup`` installs it.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("chromium not installed (make setup installs Debian's chromium)", allow_module_level=True)
websocket = pytest.importorskip("websocket", reason="websocket-client not installed")

SHOTS = Path(os.environ.get("LLMJP_SCREENSHOTS", tempfile.gettempdir())) / "llmjp_site_screenshots"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--window-size=1280,900"]


class Browser:
    """One headless chromium and a DevTools websocket to its first page."""

    def __init__(self) -> None:
        self.profile = tempfile.mkdtemp(prefix="llmjp-chromium-")
        self.proc = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={self.profile}", "--remote-debugging-port=0", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.time() + 30
        while not (port_file.is_file() and port_file.read_text().strip()):
            if time.time() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError("chromium did not start its DevTools endpoint")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10))
        ws_url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
        self.ws = websocket.create_connection(ws_url, timeout=30, suppress_origin=True)
        self._id = 0
        self.events: list[dict] = []
        for method in ("Page.enable", "Runtime.enable", "Log.enable", "Network.enable"):
            self.send(method)

    def send(self, method: str, **params):
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def pump(self, seconds: float) -> None:
        end = time.time() + seconds
        self.ws.settimeout(0.2)
        try:
            while time.time() < end:
                try:
                    self.events.append(json.loads(self.ws.recv()))
                except websocket.WebSocketTimeoutException:
                    pass
        finally:
            self.ws.settimeout(30)

    def open(self, path: Path, settle: float = 1.5) -> dict:
        """Load a page; return its console errors, requests, title, visible text, svg count."""
        self.events.clear()
        self.send("Page.navigate", url=path.resolve().as_uri())
        deadline = time.time() + 30
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            assert time.time() < deadline, f"{path}: no load event"
            self.pump(0.2)
        self.pump(settle)  # DOMContentLoaded handlers, plotly drawing
        errors = [e["params"] for e in self.events if e.get("method") == "Runtime.exceptionThrown"]
        errors += [e["params"] for e in self.events if e.get("method") == "Runtime.consoleAPICalled"
                   and e["params"].get("type") in ("error", "assert")]
        errors += [e["params"] for e in self.events if e.get("method") == "Log.entryAdded"
                   and e["params"]["entry"].get("level") == "error"]
        urls = [e["params"]["request"]["url"] for e in self.events
                if e.get("method") == "Network.requestWillBeSent"]

        def ev(expr: str):
            return self.send("Runtime.evaluate", expression=expr, returnByValue=True)["result"].get("value")

        return {"errors": errors, "urls": urls, "title": ev("document.title"),
                "text": ev("document.body.innerText"), "svgs": ev("document.querySelectorAll('.main-svg').length"),
                "xss": ev("window.__xss === undefined ? null : window.__xss")}

    def screenshot(self, name: str) -> Path:
        SHOTS.mkdir(parents=True, exist_ok=True)
        data = self.send("Page.captureScreenshot", format="png")["data"]
        out = SHOTS / name
        out.write_bytes(base64.b64decode(data))
        return out

    def close(self) -> None:
        try:
            if hasattr(self, "ws"):
                self.ws.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    from tests.site_builders import built_site

    return built_site(tmp_path_factory.getbasetemp())[-1]


@pytest.fixture(scope="module")
def browser():
    b = Browser()
    yield b
    b.close()


def _offline_ok(res: dict, path: Path) -> None:
    assert res["errors"] == [], f"{path}: console errors {res['errors'][:3]}"
    bad = [u for u in res["urls"] if not u.startswith(("file://", "data:", "blob:"))]
    assert bad == [], f"{path}: network requests {bad[:5]}"


BYTE_PIECE = r"<0x[0-9A-Fa-f]{2}>"


def _readable(res: dict, path: Path) -> None:
    text = res["text"]
    assert "\u2581" not in text, f"{path}: SentencePiece ▁ visible"
    assert not re.search(BYTE_PIECE, text), f"{path}: byte-fallback pieces visible"
    assert not (res["title"] or "").startswith("XSS"), f"{path}: a payload ran: title {res['title']!r}"


def test_site_pages_offline_readable_and_escaped(site, browser):
    """index, a feature browser and a lineage page: offline, Japanese as text, payloads inert."""
    root = site.parent
    pages = [site, *sorted((root / "browser").glob("*.html"))[:1], root / "lineages" / "lineage_0.html"]
    texts = []
    for p in pages:
        res = browser.open(p)
        _offline_ok(res, p)
        _readable(res, p)
        texts.append(res["text"])
        browser.screenshot("index.png" if p == site else f"{p.parent.name}.png")
    joined = "\n".join(texts)
    assert "京都" in joined or "東京" in joined
    assert "鰻丼" in joined, "byte-fallback pieces were not merged back into characters"
    # the payloads are shown literally, as text
    assert "<script>document.title='XSS1'</script>" in joined or "</script><script>" in joined
    assert "</span><svg/onload=" in joined or "onmouseover=" in joined


def test_figure_drawn(site, browser):
    fig = site.parent / "figures" / "sankey_granularity_none.html"
    res = browser.open(fig, settle=2.0)
    _offline_ok(res, fig)
    assert res["svgs"] > 0, "plotly figure not drawn"


def test_sae_dashboard_page(site, browser):
    """sae-dashboard page: scripts local, tokens drawn by d3, histograms by plotly, text decoded."""
    pages = sorted((site.parent / "features").rglob("feature_*.html"))
    assert pages, "no sae-dashboard pages rendered (is d3 installed? run make setup)"
    res = browser.open(pages[0], settle=2.5)
    _offline_ok(res, pages[0])
    _readable(res, pages[0])
    assert res["svgs"] > 0, "sae-dashboard histograms not drawn"
    assert re.search(r"[\u3040-\u30ff\u4e00-\u9fff]{4}", res["text"]), "no Japanese text shown"
    assert browser.send("Runtime.evaluate", expression="document.querySelectorAll('span.token').length",
                        returnByValue=True)["result"]["value"] > 0
    browser.screenshot("sae_dashboard.png")


def test_index_opens_on_the_two_findings(site, browser):
    """Both headline figures sit above every table, inside the first screen, and draw."""
    res = browser.open(site, settle=2.5)
    _offline_ok(res, site)
    geo = browser.send("Runtime.evaluate", returnByValue=True, expression="""(() => {
        const f = [...document.querySelectorAll('.headline iframe')].map(e => e.getBoundingClientRect());
        const t = document.querySelector('table').getBoundingClientRect();
        return {n: f.length, bottom: Math.max(...f.map(r => r.bottom)), table: t.top,
                screen: window.innerHeight};
    })()""")["result"]["value"]
    assert geo["n"] == 2 and geo["bottom"] <= geo["screen"] and geo["bottom"] < geo["table"], geo
    browser.screenshot("index_first_screen.png")
    for name in ("features_language_paper.html", "features_granularity.html"):
        fig = site.parent / "figures" / name
        res = browser.open(fig, settle=2.0)
        _offline_ok(res, fig)
        assert res["svgs"] > 0, f"{name}: headline figure not drawn"


def test_catalog_loads_searches_and_shows_examples(site, browser):
    """All features listed; search by id and by a Japanese token; examples from a shard; the
    payloads shown as text and never run."""
    page = site.parent / "catalog" / "iter_0000010__none.html"
    res = browser.open(page, settle=1.0)
    _offline_ok(res, page)

    def ev(expr: str):
        return browser.send("Runtime.evaluate", expression=expr, returnByValue=True)["result"].get("value")

    def search(q: str) -> list[str]:
        ev(f"(() => {{ const i = document.getElementById('cat-q'); i.value = {json.dumps(q)};"
           " i.dispatchEvent(new Event('input')); })()")
        return ev("[...document.querySelectorAll('#cat-results tr')].map(r => r.dataset.id)")

    assert ev("window.__catalogReady") is True
    assert "32 features" in ev("document.getElementById('cat-count').textContent")
    assert search("7") == ["7"]
    ids = search("京")
    assert ids, "no feature found by a Japanese token"
    cells = ev("[...document.querySelectorAll('#cat-results tr td:last-child')].map(c => c.textContent)")
    assert all("京" in c for c in cells)
    ev(f"LLMJP_open({ids[0]})")
    browser.pump(1.0)
    shown = ev("document.getElementById('cat-feature').innerText")
    assert ev("document.querySelectorAll('#cat-feature .ex').length") > 0, shown
    assert "\u2581" not in shown and not re.search(BYTE_PIECE, shown)
    browser.screenshot("catalog.png")
    # a payload feature: its text is shown, nothing ran
    search("")
    for f in range(32):
        ev(f"LLMJP_open({f})")
        browser.pump(0.1)
        text = ev("document.getElementById('cat-feature').innerText")
        if "document.title" in text:
            break
    else:
        pytest.fail("no catalog example shows a payload (test would prove nothing)")
    assert not (ev("document.title") or "").startswith("XSS")
    assert ev("document.querySelectorAll('#cat-feature svg, #cat-feature img, #cat-feature script')"
              ".length") == 0
