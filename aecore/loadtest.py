"""Load benchmark for a shared demo link: N browser sessions against one local `streamlit run app.py`.

    python -m aecore.loadtest [--sessions 20] [--start 10] [--max-runs K] [--epochs 1] [--grace 10]
                              [--timeout 900] [--chromium PATH] [--browser-nice 19] [--out FILE]

The server is a subprocess on 127.0.0.1; one headless Chromium (Playwright, a dev dependency) opens N sessions,
one browser context each, and measures in turn: page render times, server memory per idle session, one run's
samples/s alone, M runs started together (the cap K, the queue, aggregate samples/s), reattaching after a
reload, leaks between sessions, server CPU once every tab has closed. Prints one JSON object (on a failure,
what it measured so far and an "error"). tests/test_loadtest.py asserts a small run's structural truths only.

This module is the phases, their measurements and the report; serving the app and driving its pages in the
browser (`serve`, `Deadline`, `open_session`, `read_run`, ...) is `aecore.browse`.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from aecore import trace
from aecore.browse import (CHROMIUM_ARGS, CLICK_START_AT, SHOWN, TRAIN, Deadline, Session, button,
                           niced, open_session, read_run, serve, visit, wait_idle, wait_state)

OTHER_PAGES = [("Inspect", "Look inside the model"), ("Latent space", "Explore the latent space"),
               ("Draw", "Draw a digit")]
OTHER_PAGE_SESSIONS = 3                                         # sessions that also visit the other pages
SINGLE_WINDOW_S, AGGREGATE_WINDOW_S = 10.0, 30.0


# ------------------------------------------------------------------------------------------------ the server's load
def stats(pid: int) -> dict:
    """Now: the server's resident MB and CPU seconds (its children included), the machine's busy CPU seconds."""
    pids, kb, ticks = [pid], 0, 0
    for p in pids:   # the list grows while it is walked: children, their children…
        pids += [int(c) for f in Path(f"/proc/{p}/task").glob("*/children") for c in f.read_text().split()]
        kb += int(re.search(r"^VmRSS:\s+(\d+) kB", Path(f"/proc/{p}/status").read_text(), re.M).group(1))
        stat = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(stat[11]) + int(stat[12])                          # utime + stime
    cpu = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    busy = sum(cpu[:8]) - cpu[3] - cpu[4]                                  # all but idle and iowait
    hz = os.sysconf("SC_CLK_TCK")
    return {"t": time.monotonic(), "rss_mb": round(kb / 1024, 1), "server_s": ticks / hz, "machine_s": busy / hz}


def cores_busy(a: dict, b: dict) -> dict:
    """Cores busy between two `stats`: the server's, and the machine's (the browser shares these cores)."""
    return {k: round((b[f"{k}_s"] - a[f"{k}_s"]) / (b["t"] - a["t"]), 2) for k in ("server", "machine")}


def summary(values: list[float]) -> dict:
    xs = sorted(values)
    return {"median": round(statistics.median(xs), 3), "p95": round(xs[math.ceil(0.95 * len(xs)) - 1], 3),
            "max": round(xs[-1], 3), "n": len(xs)} if xs else {"n": 0}


# ------------------------------------------------------------------------------------------------ the phases
def single_run(s: Session, pid: int, deadline: Deadline) -> tuple[float | None, dict]:
    """One session alone: Start, the median displayed samples/s over up to 10 s of running (and the cores busy
    meanwhile), then Stop (a short run may have finished by itself)."""
    button(s.page, "Start").click(timeout=deadline.ms(60))
    s.own.append(wait_state(s.page, ("running", "finished"), deadline, rate=True, not_run=None)["run"])
    rates, end, start = [], time.monotonic() + SINGLE_WINDOW_S, stats(pid)
    while time.monotonic() < end and (seen := read_run(s.page))["state"] not in ("stopped", "finished", "failed"):
        if seen["state"] == "running" and seen["rate"]:
            rates.append(seen["rate"])
        time.sleep(0.5)
    busy = cores_busy(start, stats(pid))
    if read_run(s.page)["state"] == "running":
        button(s.page, "Stop").click(timeout=deadline.ms(60))
    wait_state(s.page, ("stopped", "finished"), deadline)
    return (statistics.median(rates) if rates else None), busy


def start_together(starters: list[Session], single: float | None, pid: int, deadline: Deadline,
                   trace_file: Path) -> tuple[dict, list[int]]:
    """M sessions press Start at one moment; then the cap, the queue and the aggregate samples/s over ~30 s.
    Also returns the indexes of the sessions seen queued."""
    for s in starters:   # Start is clickable everywhere before the first click
        button(s.page, "Start").click(trial=True, timeout=deadline.ms(60))
    # Every tab clicks at the same wall-clock moment (one system clock), set far enough ahead for each to hear of
    # it first: a call into a busy tab takes a while. The button is looked up then, and each tab notes the time.
    olds, at = [read_run(s.page)["run"] for s in starters], time.time() * 1000 + 1000 + 500 * len(starters)
    for s, old in zip(starters, olds):
        s.page.evaluate(CLICK_START_AT, [at, old])
    time.sleep(max(0.0, at / 1000 - time.time()))
    marks = start_marks(starters, deadline)
    for s, old in zip(starters, olds):
        s.own.append(wait_state(s.page, ("queued", "running", "finished"), deadline, not_run=old)["run"])
    clicked = [m["clicked"] for m in marks]
    # a run seen waiting for a slot is not timed, even once it starts
    first = [(m["step"] - m["clicked"]) / 1000 for m in marks if m.get("step") and not m.get("queued")]
    taken = [(m["url"] - m["clicked"]) / 1000 for m in marks if m.get("url")]
    # For each timed run, seconds after its click: the server handed it to the registry and first drew a step of it
    # (the server's marks, AELAB_TRACE), the page showed that step; and what its progress text said on the way.
    server = trace.read(trace_file)
    timed = [{**{event: round(t - m["clicked"] / 1000, 3) for event, t in server.get(m.get("run"), {}).items()},
              "shown": round((m["step"] - m["clicked"]) / 1000, 3),
              "texts": [(round((t - m["clicked"]) / 1000, 2), text) for t, text in m.get("seen", [])]}
             for m in marks if m.get("step") and not m.get("queued")]
    ticks, end, start = [], time.monotonic() + AGGREGATE_WINDOW_S, stats(pid)
    while time.monotonic() < end:   # a sweep over the M tabs every ~0.5 s
        ticks.append([read_run(s.page) for s in starters])
        time.sleep(0.5)
    busy = cores_busy(start, stats(pid))
    running = [{i for i, t in enumerate(tick) if t["state"] == "running"} for tick in ticks]
    # A tab polls its run every 0.3 s, so one whose run just ended may read "running" for a sweep after the next
    # run has started: sessions count as running at once only when two consecutive sweeps agree.
    at_once = max(len(a & b) for a, b in zip(running, running[1:] or running))
    medians = {i: statistics.median(r) for i in range(len(starters))
               if (r := [tick[i]["rate"] for tick in ticks if tick[i]["state"] == "running" and tick[i]["rate"]])}
    # Runs come and go within the window: per sweep, the sum of the running sessions' median rates.
    totals = [sum(medians.get(i, 0) for i in ids) for ids in running if ids]
    aggregate = statistics.median(totals) if totals else None
    return {"start_click_spread_s": round((max(clicked) - min(clicked)) / 1000, 3),
            "first_metric_after_start_s": {**summary(first), "each": sorted(round(x, 3) for x in first)},
            "start_answered_after_s": {**summary(taken), "each": sorted(round(x, 3) for x in taken)},
            "timed_runs": timed,
            "running_seen": sum(t["state"] == "running" for t in ticks[0]),
            "queued_seen": sum(t["state"] == "queued" for t in ticks[0]), "ran_at_once": at_once,
            "aggregate_samples_per_s": aggregate and round(aggregate),
            "aggregate_vs_single": round(aggregate / single, 3) if aggregate and single else None,
            "cores_busy_together": busy,
            "queued_positions_seen": sorted({t["position"] for tick in ticks for t in tick if t["position"]}),
            }, sorted({i for tick in ticks for i, t in enumerate(tick) if t["state"] == "queued"})


def start_marks(starters: list[Session], deadline: Deadline, window_s: float = 30.0) -> list[dict]:
    """Each tab's own record of its Start (CLICK_START_AT): the click, the URL naming the new run (the server has
    taken the Start and answered), the run first read queued, its first training step shown (ms, the page's clock,
    the same system clock as here). Waits up to `window_s` for every tab to show a step or a queue place."""
    end = time.monotonic() + deadline.ms(window_s) / 1000
    while True:
        marks = [s.page.evaluate("() => window.startMarks || {}") for s in starters]
        if time.monotonic() >= end or all(m.get("step") or m.get("queued") for m in marks):
            return marks
        time.sleep(0.25)


def queued_starts(starters: list[Session], queued: list[int], deadline: Deadline) -> bool:
    """Did a session seen queued later show running (or finished), with nobody touching it?"""
    end = time.monotonic() + deadline.ms(300) / 2000   # keep time for the phases after this one
    while queued and time.monotonic() < end:
        if any(read_run(starters[i].page)["state"] in ("running", "finished") for i in queued):
            return True
        time.sleep(0.5)
    return False


def reload_check(sessions: list[Session], R: int, deadline: Deadline) -> dict:
    """Reload R pages with a run (active ones first): the same run id stays in the URL, its step goes on."""
    with_run = sorted((s for s in sessions if read_run(s.page)["run"]),
                      key=lambda s: read_run(s.page)["state"] not in ("running", "queued"))
    good, seen = 0, []
    for s in with_run[:R]:
        run, before = read_run(s.page)["run"], wait_state(s.page, SHOWN, deadline, 20, must=False)
        s.page.reload(timeout=deadline.ms(90))
        s.page.get_by_role("heading", name=TRAIN[1]).wait_for(timeout=deadline.ms(90))
        after = wait_state(s.page, SHOWN, deadline, 60, must=False)
        ok = read_run(s.page)["run"] == run and after["state"] and (after["step"] or 0) >= (before["step"] or 0)
        good += bool(ok)
        seen.append(f"{before['state']} step {before['step']} -> {after['state']} step {after['step']}" +
                    ("" if ok else f" FAILED; the page read: {after['text']!r}") +
                    ("" if before["state"] else f" (before the reload it read: {before['text']!r})"))
    return {"tries": len(seen), "reattached": round(good / len(seen), 3) if seen else None, "seen": seen}


def leak_check(sessions: list[Session], deadline: Deadline) -> dict:
    """Each session's URL holds its own run id, and it sees no more "(yours)" models or listed runs than it ran.
    (Models and listed runs are named by preset, not by id, so a count is what a page lets us compare.)"""
    ids, problems = [read_run(s.page)["run"] for s in sessions], []
    for i, (s, run) in enumerate(zip(sessions, ids)):
        if run is not None and (run not in s.own or ids.count(run) > 1):
            problems.append(f"session {i}: the run in its URL is not its own")
        box, n = s.page.get_by_test_id("stSidebar").get_by_test_id("stSelectbox").filter(has_text="Active model"), 0
        if box.count():   # open its list, count, close it
            box.locator("input").click(timeout=deadline.ms(30))
            s.page.get_by_role("option").first.wait_for(timeout=deadline.ms(30))
            n = sum(t.strip().endswith("(yours)") for t in s.page.get_by_role("option").all_inner_texts())
            s.page.keyboard.press("Escape")
        if n > len(s.own):
            problems.append(f"session {i}: {n} '(yours)' models from {len(s.own)} runs of its own")
        listed = s.page.get_by_test_id("stExpander").filter(has_text="Your runs on this server")
        if listed.count() and (n := int(re.search(r"\((\d+)\)", listed.first.inner_text()).group(1))) > len(s.own):
            problems.append(f"session {i}: lists {n} runs, started {len(s.own)}")
    return {"violations": len(problems), "problems": problems}


def measure(browser, url: str, pid: int, args, deadline: Deadline, out: dict, trace_file: Path) -> None:
    """Every phase in order; each writes its part of `out` as soon as it has it."""
    # A warm-up visitor loads the shared data and models and stays (a closed session is dropped only after
    # Streamlit's disconnectedSessionTTL, 120 s), on the Train page: the other pages leave garbage in reference
    # cycles that Python frees at some later moment (the app turns Streamlit's gc after each run off), and RSS
    # fell by ~30 MB while the idle sessions were being opened.
    warm, _ = open_session(browser, url, deadline)
    time.sleep(3)
    before, sessions, renders, rss = stats(pid)["rss_mb"], [], [], []
    for _ in range(args.sessions):
        s, seconds = open_session(browser, url, deadline)
        sessions.append(s)
        renders.append(seconds)
        rss.append(stats(pid)["rss_mb"])   # the noise: RSS also falls when Python frees older garbage
    out["page_render_s"] = summary(renders)
    time.sleep(3)
    after = stats(pid)["rss_mb"]
    out["idle_memory_mb"] = {"before": before, "after": after, "min_while_opening": min(rss),
                             "max_while_opening": max(rss),
                             "per_idle_session_mb": round((after - before) / args.sessions, 2)}
    times = {link: [] for link, _ in OTHER_PAGES}
    for s in sessions[:OTHER_PAGE_SESSIONS]:
        for link, heading in OTHER_PAGES:
            times[link].append(visit(s.page, link, heading, deadline))
        visit(s.page, *TRAIN, deadline)
    out["other_pages_render_s"] = {link: summary(v) for link, v in times.items()}

    starters = sessions[:args.start]
    for s in starters:   # the form's Epochs field (the form now differs from the preset: a custom run)
        s.page.get_by_role("spinbutton", name="Epochs", exact=True).fill(str(args.epochs), timeout=deadline.ms(60))
        s.page.keyboard.press("Enter")
        wait_idle(s.page, deadline)
    single, out["cores_busy_single"] = single_run(sessions[0], pid, deadline)
    out["single_run_samples_per_s"] = single and round(single)
    together, queued = start_together(starters, single, pid, deadline, trace_file)
    out.update(together)
    out["queued_started_by_itself"] = queued_starts(starters, queued, deadline)
    out["reload"] = reload_check(starters, min(5, args.start), deadline)
    out["cross_session_leaks"] = leak_check(sessions, deadline)

    for s in [warm, *sessions]:
        s.page.context.close()
    time.sleep(args.grace + 5)   # runs nobody watches stop after the grace time
    start = stats(pid)
    time.sleep(3)
    out["cpu_after_close"] = cores_busy(start, stats(pid))["server"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m aecore.loadtest", description=__doc__.split("\n")[0])
    ap.add_argument("--sessions", type=int, default=20, help="browser sessions opened (N)")
    ap.add_argument("--start", type=int, default=10, help="sessions that press Start together (M <= N)")
    ap.add_argument("--max-runs", type=int, default=None, help="AELAB_MAX_RUNS (default: the server's, one per core)")
    ap.add_argument("--epochs", type=int, default=1, help="epochs of the pytorch-784-200 preset")
    ap.add_argument("--grace", type=float, default=10.0, help="AELAB_RUN_GRACE_S: unwatched runs stop after it")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds for everything")
    ap.add_argument("--chromium", default="/usr/bin/chromium", help="Chromium executable (Debian's by default)")
    ap.add_argument("--browser-nice", type=int, default=19,
                    help="run the browser at this CPU niceness (19: it gets only what the server leaves, as when "
                         "visitors' browsers run on their own machines; 0: compete with the server)")
    ap.add_argument("--out", default=None, help="also write the JSON to this file")
    args = ap.parse_args(argv)
    if not 1 <= args.start <= args.sessions:
        ap.error("--start must be between 1 and --sessions")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sys.exit("aecore.loadtest needs playwright, a dev dependency: pip install -r requirements-dev.txt")
    from aecore.runs.settings import cpu_slots

    trace_file = Path(tempfile.gettempdir()) / f"aelab-loadtest-{os.getpid()}.trace"    # the server's timing marks
    trace_file.unlink(missing_ok=True)
    env = dict(os.environ, AELAB_RUN_GRACE_S=str(args.grace), AELAB_TRACE=str(trace_file))
    if args.max_runs:
        env["AELAB_MAX_RUNS"] = str(args.max_runs)
    out = {"settings": {"sessions": args.sessions, "start": args.start, "max_runs": args.max_runs or cpu_slots(),
                        "epochs": args.epochs, "grace_s": args.grace, "cores": cpu_slots(),
                        "browser_nice": args.browser_nice,
                        "load_avg_1m_before": round(os.getloadavg()[0], 2), "chromium": None, "wall_s": None}}
    log = Path(tempfile.gettempdir()) / f"aelab-loadtest-{os.getpid()}.log"   # kept only on a failure
    t0, deadline = time.monotonic(), Deadline(args.timeout)
    try:
        with serve(env, log, deadline) as (url, pid), sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=niced(args.chromium, args.browser_nice, log.parent),
                                         headless=True, args=CHROMIUM_ARGS)
            try:
                out["settings"]["chromium"] = browser.version
                measure(browser, url, pid, args, deadline, out, trace_file)
            finally:
                browser.close()   # and every context in it
    except Exception as e:       # report what was measured so far, and why it stopped
        out["error"] = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0]} (server log: {log})"
    else:
        log.unlink(missing_ok=True)
    finally:
        for launcher in log.parent.glob(f"aelab-chromium-nice*-{os.getpid()}"):
            launcher.unlink(missing_ok=True)
        trace_file.unlink(missing_ok=True)
    out["settings"]["wall_s"] = round(time.monotonic() - t0, 1)
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 1 if "error" in out else 0


if __name__ == "__main__":
    sys.exit(main())
