"""Load benchmark for a class: N students' browser sessions train for one class while the teacher's board renders.

    python -m aecore.classload [--students 30] [--epochs 1] [--profile hosted] [--timeout 1500]
                               [--chromium PATH] [--browser-nice 19] [--out FILE]

A local `streamlit run app.py` (its own run store in a temporary folder, the hosted profile by default) and one
headless Chromium: the class is made in the store (test loss, the Keras 784-32 preset, `--epochs` at most); then
each student, a browser context of its own (a visitor), opens the student link, joins with a nickname, presses
"Train for this class" and Start; after each student, and then until every run is on the board, the teacher's
session reloads the Class page and times it (from the request until the board's caption shows the runs so far
and the app is idle). Prints one JSON object: render times (median, p95, max) while the class trains and once it has
all finished, how many runs reached the board, the server's memory. The README's "Teaching with AE Lab" quotes it.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

from aecore.argv import OneLineParser, positive_int
from aecore.browse import CHROMIUM_ARGS, VIEWPORT, Deadline, button, niced, serve, wait_idle
from aecore.labs import classroom
from aecore.loadtest import stats, summary
from aecore.runs.store import Store

BOARD = re.compile(r"(\d+) students? · (\d+) runs? on the board")


def render_board(page, url: str, code: str, deadline: Deadline) -> tuple[float, int]:
    """Seconds to (re)load the teacher's Class page until the board's caption shows and the app is idle; and the
    runs the board holds then."""
    t = time.monotonic()
    page.goto(f"{url}/classroom?class={code}", timeout=deadline.ms(120))
    caption = page.get_by_text(BOARD).first
    caption.wait_for(timeout=deadline.ms(120))
    wait_idle(page, deadline, cap_s=120)
    seconds = time.monotonic() - t
    return seconds, int(BOARD.search(caption.inner_text()).group(2))


def join_and_start(browser, url: str, code: str, name: str, deadline: Deadline):
    """A new student: the class link, a nickname, Train for this class, Start. Returns its page (kept open: a run
    nobody watches is stopped after the grace time)."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(deadline.ms(120))
    page = context.new_page()
    page.goto(f"{url}/classroom?class={code}", timeout=deadline.ms(120))
    page.get_by_label("Your nickname (the board shows it)").fill(name)
    button(page, "Join").click()
    page.get_by_text(f"You are {name} in this class.").wait_for()
    button(page, "Train for this class").click()
    button(page, "Start").wait_for()
    wait_idle(page, deadline)
    button(page, "Start").click()
    page.get_by_test_id("stProgress").first.wait_for()
    return page


def measure(browser, url: str, pid: int, code: str, args, deadline: Deadline, out: dict) -> None:
    teacher = browser.new_context(viewport=VIEWPORT).new_page()
    training, ended, students = [], [], []
    for i in range(args.students):
        students.append(join_and_start(browser, url, code, f"student {i + 1:02d}", deadline))
        training.append(render_board(teacher, url, code, deadline)[0])
    out["students_started"] = len(students)
    end = time.monotonic() + deadline.ms(args.epochs * 600) / 1000
    on_board = 0
    while on_board < args.students and time.monotonic() < end:
        seconds, on_board = render_board(teacher, url, code, deadline)
        training.append(seconds)
    for _ in range(10):
        seconds, on_board = render_board(teacher, url, code, deadline)
        ended.append(seconds)
    out.update(runs_on_board=on_board, render_while_training_s=summary(training),
               render_all_finished_s=summary(ended), server=stats(pid))
    for page in students:
        page.context.close()


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog="python -m aecore.classload", description=__doc__.split("\n\n")[0])
    p.add_argument("--students", type=positive_int, default=30)
    p.add_argument("--epochs", type=positive_int, default=1, help="the class's limit, and each run's epochs")
    p.add_argument("--profile", choices=("hosted", "local"), default="hosted")
    p.add_argument("--timeout", type=positive_int, default=1500, help="seconds for the whole benchmark")
    p.add_argument("--chromium", default="/usr/bin/chromium")
    p.add_argument("--browser-nice", type=int, default=19, help="Chromium's CPU niceness: the server comes first")
    p.add_argument("--out", type=Path, help="also write the JSON here")
    args = p.parse_args(argv)
    from playwright.sync_api import sync_playwright

    deadline, out = Deadline(args.timeout), {"students": args.students, "epochs": args.epochs,
                                             "profile": args.profile, "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="aelab-class-") as tmp:
        store = Store(Path(tmp) / "store")
        made = classroom.create(store, "Load test", classroom.Challenge(max_epochs=args.epochs))
        store.close()
        env = dict(os.environ, AELAB_STORE=str(Path(tmp) / "store"), AELAB_PROFILE=args.profile)
        try:
            with serve(env, Path(tmp) / "streamlit.log", deadline) as (url, pid), sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=niced(args.chromium, args.browser_nice, Path(tmp)),
                                             headless=True, args=CHROMIUM_ARGS)
                try:
                    measure(browser, url, pid, made.code, args, deadline, out)
                finally:
                    browser.close()
        except Exception as e:      # what was measured so far, and why it stopped
            out["error"] = f"{type(e).__name__}: {e}"
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 1 if "error" in out else 0


if __name__ == "__main__":
    sys.exit(main())
