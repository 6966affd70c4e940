"""Open the built book in headless Chromium (Debian's, driven by Playwright) at a 1400-pixel
window, with every request that leaves the machine blocked, as an offline reader would:

* every page in the toc loads with no failed resource (nothing is fetched from the internet),
  formulas are typeset (no raw TeX delimiters left in the text), nothing scrolls sideways;
* every figure has a non-zero size, no cell shows an error, internal links resolve;
* notebook pages carry a Colab launch link, show their results tables as HTML tables (not
  printed text), label their three scales, and hold no progress-bar residue (``0%|``);
* the status page and every chapter page show the claims ledger as a table.

Run by `nox -s book` after the build."""

from __future__ import annotations

import functools
import http.server
import re
import shutil
import threading
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
HTML = ROOT / "build" / "html"
pytestmark = pytest.mark.book


def _toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "book" / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries):
        for e in entries or []:
            if "file" in e:
                files.append(e["file"])
            walk(e.get("sections"))

    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    return files


@pytest.fixture(scope="module")
def server():
    if not (HTML / "index.html").exists():
        pytest.fail(f"no built book at {HTML}: run `nox -s book` (or `repro book`) first")
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # keep pytest's output readable
            pass

    handler = functools.partial(Quiet, directory=str(HTML))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    exe = shutil.which("chromium")
    if exe is None:
        pytest.fail("Debian's chromium is not installed: `apt-get install chromium` "
                    "(never `playwright install`)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, headless=True, args=[
            "--headless", "--no-sandbox", "--disable-background-networking",
            "--disable-component-update", "--disable-gpu"])
        yield b
        b.close()


PAGES = _toc_files()


# JavaScript run in each page: the main column's text without code, and layout facts
PAGE_FACTS = """() => {
    const main = document.querySelector('main') || document.body;
    const clone = main.cloneNode(true);
    clone.querySelectorAll('pre, code, .highlight, script, style, mjx-container, .MathJax')
        .forEach(e => e.remove());
    const outputs = Array.from(document.querySelectorAll('.cell_output'));
    return {
        text: clone.textContent,
        overflow: main.scrollWidth - main.clientWidth,
        article_overflow: Array.from(document.querySelectorAll('article, .bd-article'))
            .map(e => e.scrollWidth - e.clientWidth),
        output_tables: outputs.map(o => o.querySelectorAll('table').length)
            .reduce((a, b) => a + b, 0),
        output_pre: outputs.flatMap(o => Array.from(o.querySelectorAll('pre'))
            .map(p => p.textContent)),
        scale_labels: Array.from(document.querySelectorAll('.repro-scale-label'))
            .map(e => e.className),
        scales_table: Array.from(document.querySelectorAll('table.repro-scales th'))
            .map(e => e.textContent),
        ledger_tables: document.querySelectorAll('table.repro-ledger').length,
        math: document.querySelectorAll('mjx-container').length,
    };
}"""
TEXT_TABLE_RULE = re.compile(r"^\s*-{2,}(?:\s{2,}-{2,})+\s*$", re.M)  # bench.format_table
RAW_TEX = re.compile(r"\\\(|\\\)|\\\[|\\\]|\$\$")
CHAPTERS = [f for f in _toc_files() if f.endswith("/index") and not f.startswith("parts/")]


def _open(browser, server, page_file):
    """Open a page with every request that leaves our server blocked; return the page and the
    URLs of resources that failed (blocked ones included)."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    failed: list[str] = []
    page.on("requestfailed", lambda req: failed.append(req.url))
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(server)
               else route.abort())
    response = page.goto(urljoin(server, f"{page_file}.html"), wait_until="load")
    assert response is not None and response.ok, f"{page_file}: HTTP {response and response.status}"
    page.wait_for_load_state("networkidle")
    # MathJax typesets after load; wait for it when the page uses it
    page.evaluate("""() => (window.MathJax && MathJax.startup && MathJax.startup.promise)
        ? MathJax.startup.promise.then(() => true) : true""")
    return page, failed


@pytest.mark.parametrize("page_file", PAGES)
def test_page_loads_with_figures_and_without_errors(server, browser, page_file):
    url = urljoin(server, f"{page_file}.html")
    page, failed = _open(browser, server, page_file)
    assert page.title().strip()
    images = page.evaluate("""() => Array.from(document.querySelectorAll('main img'))
        .map(i => [i.currentSrc || i.src, i.complete, i.naturalWidth, i.naturalHeight])""")
    # external images (the Colab badge) cannot load offline; our figures must
    images = [img for img in images if img[0].startswith(server)]
    broken = [src for src, done, w, h in images if not (done and w > 0 and h > 0)]
    assert not broken, f"{url}: figures with no size: {broken}"
    errors = page.evaluate("""() => Array.from(document.querySelectorAll(
        '.output.traceback, .output.error, .cell_output .traceback')).length""")
    text = page.inner_text("main")
    assert errors == 0 and "Traceback (most recent call last)" not in text, f"{url}: error output"
    if page_file.startswith("notebooks/"):
        assert images, f"{url}: a notebook page must show at least one figure"
        hrefs = page.evaluate("() => Array.from(document.querySelectorAll('a')).map(a => a.href)")
        assert any("colab.research.google.com" in h for h in hrefs), f"{url}: no Colab link"
        shots = ROOT / "build" / "screenshots"
        shots.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shots / (page_file.replace("/", "_") + ".png")), full_page=False)
    facts = page.evaluate(PAGE_FACTS)
    page.close()
    assert not failed, f"{url}: resources failed to load offline: {failed}"
    raw = RAW_TEX.findall(facts["text"])
    assert not raw, f"{url}: raw TeX delimiters in the rendered text: {raw[:5]}"
    assert facts["overflow"] <= 1, f"{url}: the main column scrolls sideways by " \
        f"{facts['overflow']} px at 1400 px"
    assert all(o <= 1 for o in facts["article_overflow"]), f"{url}: {facts['article_overflow']}"
    if page_file.startswith("notebooks/"):
        assert facts["output_tables"] >= 1, f"{url}: no results table rendered as HTML"
        text_tables = [t[:200] for t in facts["output_pre"] if TEXT_TABLE_RULE.search(t)]
        assert not text_tables, f"{url}: results printed as text tables: {text_tables}"
        residue = [t[:120] for t in facts["output_pre"] if re.search(r"\b0%\|", t)]
        assert not residue, f"{url}: progress-bar residue in outputs: {residue}"
        labels = " ".join(facts["scale_labels"])
        for scale in ("ci", "full"):
            assert f"repro-scale-{scale}" in labels, f"{url}: no label on the {scale} cell"
        heads = " ".join(facts["scales_table"])
        assert all(s in heads for s in ("ci", "local", "full")), f"{url}: no scales table"
    if page_file == "status" or page_file in CHAPTERS:
        assert facts["ledger_tables"] >= 1, f"{url}: no claims-ledger table"


def test_internal_links_resolve(server, browser):
    page = browser.new_page()
    broken = []
    checked: set[str] = set()
    for page_file in PAGES:
        page.goto(urljoin(server, f"{page_file}.html"), wait_until="domcontentloaded")
        hrefs = page.evaluate("() => Array.from(document.querySelectorAll('a[href]'))"
                              ".map(a => a.href)")
        ids = set(page.evaluate("() => Array.from(document.querySelectorAll('[id]'))"
                                ".map(e => e.id)"))
        for href in hrefs:
            if not href.startswith(server):
                continue
            target, frag = urldefrag(href)
            if target == urljoin(server, f"{page_file}.html") and frag and frag not in ids:
                broken.append(f"{page_file}: #{frag}")
            if target in checked:
                continue
            checked.add(target)
            path = urlparse(target).path
            if path.endswith("/"):
                path += "index.html"
            try:
                urllib.request.urlopen(urljoin(server, path.lstrip("/")), timeout=10).close()
            except urllib.error.HTTPError as err:
                broken.append(f"{page_file} -> {target} ({err.code})")
    page.close()
    assert not broken, "broken internal links:\n" + "\n".join(broken)
