"""Page times: how long each page of the app takes to show, on a fresh server and warm.

    python -m aecore.pagetimes [--pages start,train,...] [--warm 3] [--chromium PATH] [--out FILE.json]

For every page listed in app.py: a fresh `streamlit run app.py` (its first visitor), headless Chromium opens
that page's URL, and "cold" is the time from the request until the page's title shows and the app is idle (no
script running, no spinner); then `--warm` new visitors open the same page on that server one after another,
and "warm" is the median of their times. The server and the browser share this machine's cores. Prints one JSON
line per page, then a Markdown table (page, cold, warm) on stderr; `--out` writes them all as JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from aecore.argv import OneLineParser, positive_int
from aecore.browse import CHROMIUM_ARGS, REPO, VIEWPORT, Deadline, serve, wait_idle

PAGE = re.compile(r'st\.Page\("app_pages/(\w+)\.py", title="([^"]+)"(, [^)]*default=True)?')


def pages() -> list[tuple[str, str, str]]:
    """(name, title, URL path) of every page in app.py, in its order; the default page is at the root."""
    found = PAGE.findall((REPO / "app.py").read_text())
    return [(name, title, "" if default else name) for name, title, default in found]


def open_page(browser, url: str, deadline: Deadline) -> float:
    """Seconds from a new visitor's request for `url` until a page title shows and the app is idle."""
    context = browser.new_context(viewport=VIEWPORT)
    try:
        page = context.new_page()
        t = time.monotonic()
        page.goto(url, timeout=deadline.ms(120))
        page.locator('[data-testid="stMain"] h1').first.wait_for(timeout=deadline.ms(120))
        wait_idle(page, deadline, cap_s=120)
        return time.monotonic() - t
    finally:
        context.close()


def measure(browser, name: str, path: str, warm: int, deadline: Deadline, log: Path) -> dict:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with serve(env, log, deadline) as (url, _pid):
        cold = open_page(browser, f"{url}/{path}", deadline)
        warms = [open_page(browser, f"{url}/{path}", deadline) for _ in range(warm)]
    return {"page": name, "cold_s": round(cold, 2), "warm_s": round(statistics.median(warms), 2),
            "warm_all_s": [round(w, 2) for w in warms]}


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m aecore.pagetimes", description=__doc__.splitlines()[0])
    p.add_argument("--pages", help="comma-separated page names (default: every page in app.py)")
    p.add_argument("--warm", type=positive_int, default=3, help="warm visits per page (their median is reported)")
    p.add_argument("--chromium", default="/usr/bin/chromium", help="the Chromium executable")
    p.add_argument("--timeout", type=positive_int, default=1200, help="seconds for the whole measurement")
    p.add_argument("--out", help="also write the figures to this JSON file")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    listed = pages()
    if args.pages:
        wanted = [n.strip() for n in args.pages.split(",") if n.strip()]
        unknown = sorted(set(wanted) - {n for n, _, _ in listed})
        if unknown:
            parser().error(f"--pages: no page named {', '.join(unknown)} in app.py")
        listed = [p for p in listed if p[0] in wanted]
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("aecore.pagetimes: needs playwright (pip install -r requirements-dev.txt)", file=sys.stderr)
        return 1
    deadline, rows = Deadline(args.timeout), []
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=args.chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            for name, title, path in listed:
                row = {"title": title, **measure(browser, name, path, args.warm, deadline, Path(tmp) / "server.log")}
                print(json.dumps(row), flush=True)
                rows.append(row)
        finally:
            browser.close()
    print("| page | fresh server | warm (median of %d) |\n| --- | --- | --- |" % args.warm, file=sys.stderr)
    for r in rows:
        print(f"| {r['title']} | {r['cold_s']:.1f} s | {r['warm_s']:.1f} s |", file=sys.stderr)
    if args.out:
        Path(args.out).write_text(json.dumps({"pages": rows, "cpu_count": os.cpu_count()}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
