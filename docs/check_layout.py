"""Check, in a headless Chromium, that the built pages' code blocks fit the page.

    python3 docs/check_layout.py docs/_build/html [--width 1280] [--require-browser]
                                 [--screenshot PAGE OUT.png]

Each page is loaded at the given window width (1280 px by default, a common
laptop) with a small script appended that compares each ``<pre>``'s
``scrollWidth`` with its ``clientWidth``: a code block wider than its box
hides the end of its lines behind a scroll bar.  Exit status 1 lists every
such block (page, width needed, width shown, first line); 0 when all fit.
Without Chromium it says so and exits 0 (the check is skipped), or 2 with
``--require-browser``.  The pages are checked in a copy of the build, which
is left untouched.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import List, Optional

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--hide-scrollbars",
         "--run-all-compositor-stages-before-draw", "--virtual-time-budget=5000"]
# appended to each page: measures every <pre> once the page has laid out, and
# writes the findings as JSON into an element that --dump-dom prints
MEASURE = """
<script>
window.addEventListener("load", function () {
  var found = [];
  document.querySelectorAll("pre").forEach(function (pre) {
    if (pre.scrollWidth > pre.clientWidth + 1) {
      found.push({needed: pre.scrollWidth, shown: pre.clientWidth,
                  line: pre.textContent.split("\\n")[0].slice(0, 80)});
    }
  });
  var out = document.createElement("div");
  out.id = "layout-check";
  out.textContent = JSON.stringify({pres: document.querySelectorAll("pre").length, overflowing: found});
  document.body.appendChild(out);
});
</script>
"""
RESULT = re.compile(r'<div id="layout-check">(.*?)</div>', re.S)


def find_browser() -> Optional[str]:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


def _unescape(text: str) -> str:
    return text.replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def measure(browser: str, page: Path, width: int) -> dict:
    """``{"pres": N, "overflowing": [...]}`` for one page (with MEASURE appended)."""
    profile = tempfile.mkdtemp(prefix="layout-profile-")
    try:
        done = subprocess.run(
            [browser, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},1000",
             "--dump-dom", page.as_uri()],
            capture_output=True, text=True, timeout=120,
        )
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    found = RESULT.search(done.stdout)
    if found is None:
        raise RuntimeError(f"{page.name}: the browser printed no result\n{done.stderr[-2000:]}")
    return json.loads(_unescape(found.group(1)))


def check(site: Path, width: int, browser: str) -> List[str]:
    """One line per code block wider than its box, on every page of ``site``."""
    with tempfile.TemporaryDirectory(prefix="layout-") as scratch:
        copy = Path(scratch) / "html"
        shutil.copytree(site, copy)
        pages = sorted(p for p in copy.glob("*.html") if p.name not in ("genindex.html", "search.html"))
        for page in pages:
            html = page.read_text(encoding="utf-8")
            page.write_text(html.replace("</body>", MEASURE + "</body>"), encoding="utf-8")
        with ThreadPoolExecutor(max_workers=2) as pool:
            results = list(pool.map(lambda p: measure(browser, p, width), pages))
    problems = []
    for page, result in zip(pages, results):
        for block in result["overflowing"]:
            problems.append(f"{page.name}: a code block needs {block['needed']} px, shows "
                            f"{block['shown']} px: {block['line']!r}")
    return problems


def screenshot(browser: str, page: Path, out: Path, width: int) -> None:
    profile = tempfile.mkdtemp(prefix="layout-profile-")
    try:
        subprocess.run([browser, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},4000",
                        f"--screenshot={out}", page.as_uri()], capture_output=True, timeout=120, check=True)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("site", type=Path, help="the built HTML folder")
    parser.add_argument("--width", type=int, default=1280, help="window width in px (default 1280)")
    parser.add_argument("--require-browser", action="store_true", help="fail (status 2) without Chromium")
    parser.add_argument("--screenshot", nargs=2, metavar=("PAGE", "OUT"),
                        help="also save a screenshot of PAGE (e.g. debugging.html) to OUT")
    args = parser.parse_args(argv)
    browser = os.environ.get("CHROMIUM") or find_browser()
    if browser is None:
        print(f"check_layout: skipped: no Chromium found ({', '.join(BROWSERS)}, or $CHROMIUM); "
              "code block widths not checked")
        return 2 if args.require_browser else 0
    if args.screenshot:
        screenshot(browser, args.site / args.screenshot[0], Path(args.screenshot[1]).resolve(), args.width)
    problems = check(args.site, args.width, browser)
    for line in problems:
        print(line)
    print(f"check_layout: {len(problems)} code block(s) wider than the page at {args.width} px")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
