"""Open the built book in headless Chromium (Debian's, driven by Playwright): every page in
the toc loads, every figure has a non-zero size, no cell shows an error, internal links
resolve, notebook pages carry a Colab launch link. Run by `nox -s book` after the build."""

from __future__ import annotations

import functools
import http.server
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


@pytest.mark.parametrize("page_file", PAGES)
def test_page_loads_with_figures_and_without_errors(server, browser, page_file):
    url = urljoin(server, f"{page_file}.html")
    page = browser.new_page()
    # the book is offline: block anything that is not our server (fonts, CDNs)
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(server)
               else route.abort())
    response = page.goto(url, wait_until="load")
    assert response is not None and response.ok, f"{url}: HTTP {response and response.status}"
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
    page.close()


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
