"""The built book as a reader sees it: every page opened in headless Chromium, checked, screenshotted.

    python -m quantlib.reporting.check_html [BUILD_DIR] [--screenshots DIR]

A page fails if it does not load, if a figure the page references does not render (an <img> with no
pixels), if executed code left an error in it (a traceback or stderr output; a failed run's page shows
the error that stopped it), if it requests anything
from outside this machine (the book must work offline: MathJax and fonts included), or if a table is
clipped (wider than the space it is shown in). Screenshots go to
book/_build/screenshots/ (build artefacts). Needs Debian's chromium and chromium-driver and the
selenium package; exit 0 all pages pass, 1 some page failed, 2 the browser is missing.
"""
from __future__ import annotations

import argparse
import functools
import http.server
import os
import shutil
import sys
import threading
from pathlib import Path

from quantlib.io import paths
from quantlib.reporting import book_runs

# Debian's packages by default; CHROMIUM / CHROMEDRIVER name others (e.g. google-chrome on CI images)
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver") or "/usr/bin/chromedriver"
# flags for a closed network: no background connections, no sandbox as root, no GPU
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1280,2000"]
ERROR_SELECTORS = [".output.traceback", ".output.error"]
CHAPTER_ONLY = [".output.stderr"]  # warnings printed by chapter code; run notebooks may log to stderr


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for f in FLAGS:
        opts.add_argument(f)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL"})  # every request the page makes
    return webdriver.Chrome(service=Service(DRIVER), options=opts)


LOCAL = ("http://127.0.0.1", "data:", "blob:", "about:", "chrome", "devtools:")


def external_requests(driver) -> list[str]:
    """URLs the page asked for outside this machine (from the browser's network log)."""
    import json

    urls = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") == "Network.requestWillBeSent":
            url = msg["params"]["request"]["url"]
            if not url.startswith(LOCAL):
                urls.append(url)
    return urls


CLIPPED_TABLES = """
return Array.from(document.querySelectorAll('main table, article table')).filter(t => {
  for (let e = t.parentElement; e && e !== document.body; e = e.parentElement) {
    const s = getComputedStyle(e);
    if (['auto', 'scroll', 'hidden'].includes(s.overflowX)) return t.scrollWidth > e.clientWidth + 2;
  }
  return t.getBoundingClientRect().right > document.documentElement.clientWidth + 2;
}).map(t => (t.querySelector('caption') || t).textContent.trim().slice(0, 80));
"""


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve(root: Path):
    handler = functools.partial(_Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def check_page(driver, url: str, chapter: bool = True) -> list[str]:
    """Problems found on one page (empty: it passed)."""
    from selenium.webdriver.common.by import By

    driver.get_log("performance")  # drop what earlier pages logged
    driver.get(url)
    problems = [f"external request: {u}" for u in external_requests(driver)]
    problems += [f"clipped table: {t!r}" for t in driver.execute_script(CLIPPED_TABLES)]
    if "404" in driver.title or not driver.find_elements(By.CSS_SELECTOR, "main, article, .bd-article"):
        problems.append("page did not load")
    for img in driver.find_elements(By.CSS_SELECTOR, "main img, article img"):
        if not driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", img):
            problems.append(f"figure not rendered: {img.get_attribute('src')}")
    body = driver.find_element(By.TAG_NAME, "body").text
    if not chapter and book_runs.FAILED_NOTE in body:  # a failed run's page shows the error that stopped it
        return problems
    for sel in ERROR_SELECTORS + (CHAPTER_ONLY if chapter else []):
        for el in driver.find_elements(By.CSS_SELECTOR, sel):
            problems.append(f"error output ({sel}): {el.text[:200]!r}")
    if "Traceback (most recent call last)" in body:
        problems.append("a traceback is shown")
    return problems


def full_page_screenshot(driver, file: Path, max_height: int = 30000) -> None:
    """The whole page, top to bottom (a reviewer reads every table and figure, not the first screen)."""
    height = driver.execute_script("return Math.max(document.body.scrollHeight, "
                                   "document.documentElement.scrollHeight)")
    driver.set_window_size(1280, min(max(height, 2000), max_height))
    try:
        driver.save_screenshot(str(file))
    finally:
        driver.set_window_size(1280, 2000)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("build", nargs="?", type=Path, default=paths.BOOK / "_build" / "html")
    ap.add_argument("--screenshots", type=Path, default=paths.BOOK / "_build" / "screenshots")
    args = ap.parse_args(argv)
    if not (Path(CHROMIUM).exists() and Path(DRIVER).exists()):
        print(f"check_html: {CHROMIUM} or {DRIVER} is missing (apt-get install chromium chromium-driver)",
              file=sys.stderr)
        return 2
    if not (args.build / "index.html").exists():
        print(f"check_html: no built book at {args.build} (run `make book`)", file=sys.stderr)
        return 1
    pages = sorted(p.relative_to(args.build) for p in args.build.rglob("*.html")
                   if not {"_static", "_sources", "_images"} & set(p.parts)
                   and p.name not in ("search.html", "genindex.html"))
    shutil.rmtree(args.screenshots, ignore_errors=True)
    args.screenshots.mkdir(parents=True)
    server, driver, failed = serve(args.build), browser(), 0
    try:
        for page in pages:
            problems = check_page(driver, f"http://127.0.0.1:{server.server_port}/{page.as_posix()}",
                                  chapter=page.parts[0] != "runs")
            full_page_screenshot(driver, args.screenshots / (page.as_posix().replace("/", "__")[:-5] + ".png"))
            failed += bool(problems)
            print(("FAIL " if problems else "ok   ") + page.as_posix() + "".join(f"\n     {p}" for p in problems))
    finally:
        driver.quit()
        server.shutdown()
    print(f"{len(pages) - failed} of {len(pages)} pages pass; screenshots in {args.screenshots}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
