"""The Train page's steering of a running or paused run (aecore.engine.steering): change its settings from the
next step on, step a paused run a few batches at a time, slow it down; and the changes it made, as labelled marks
for its loss chart. The changes are the run's own record (its metrics records, its spec's schedule), so the marks,
the checkpoint and the run's link all say the same.
"""
from __future__ import annotations

import time

import streamlit as st

from aecore.engine import steering
from aecore.engine.fields import format_value
from aecore.runs import RunSpec
from ui import form

WAIT_S = 3.0        # how long Step waits for its batches before the page redraws (the live view goes on after)


def made(run) -> list[tuple]:
    """The changes the run has made so far, (step, setting, value), in order."""
    return steering.made(run.snapshot.records)


def marks(run) -> list[tuple[int, str]]:
    """(step, label) per step at which the run changed something: 'lr 0.0005 · noise mask'."""
    by_step: dict[int, list[str]] = {}
    for step, name, value in made(run):
        by_step.setdefault(step, []).append(f"{name} {format_value(value)}")
    return [(step, " · ".join(parts)) for step, parts in by_step.items()]


def stepping(prefix: str, run) -> bool:
    """Whether a Step of this run is still training its batches (the live view keeps polling meanwhile)."""
    target = st.session_state.get(prefix + "step_to")
    last = run.snapshot.last if run is not None else None
    if target is None or run is None or target[0] != run.id or run.state != "paused":
        return False
    return last is None or last.step < target[1]


def section(registry, run, prefix: str) -> None:
    """"Change while it trains": the run's steerable settings at their values now and Apply; Step while paused;
    the speed. Drawn for a running or paused training run only."""
    if run is None or run.state not in ("running", "paused") or not isinstance(run.spec, RunSpec):
        return
    spec, last = run.spec, run.snapshot.last
    key = prefix + "change."
    now = steering.current(spec.model, spec.train, made(run))
    if last is not None and "lr" in now:
        now["lr"] = last.lr                      # a milestone may have lowered it since
    if st.session_state.get(prefix + "change_run") != run.id:       # another run: its values, full speed
        st.session_state[prefix + "change_run"] = run.id
        st.session_state.update({key + n: form.widget_value(n, v, spec.model.family) for n, v in now.items()})
        st.session_state[prefix + "pace"] = 0.0
    with st.container(border=True):
        st.markdown("**Change while it trains**")
        names = list(now)
        for column, name in zip(st.columns(len(names)), names):
            with column:
                form.draw(name, key, spec.model.family)
        asked = {n: form.config_value(n, st.session_state[key + n]) for n in names}
        changed = {n: v for n, v in asked.items() if v != now[n]}
        c1, c2 = st.columns([1, 3], vertical_alignment="center")
        if c1.button("Apply changes", icon=":material/published_with_changes:", key=prefix + "btn_apply",
                     disabled=not changed):
            try:
                for name, value in changed.items():
                    registry.send(run.id, steering.Change(name, value))
            except ValueError as e:
                st.error(f"**Not applied.** {e}", icon=":material/block:")
        c2.caption("A change applies from the next step and is marked on the chart. The run keeps it: its "
                   "checkpoint and its link repeat the same changes at the same steps.")
        s1, s2, s3 = st.columns([1, 1, 2], vertical_alignment="bottom")
        n = s1.number_input("Batches", 1, steering.MAX_STEP, 1, key=prefix + "step_batches",
                            help="How many batches Step trains before the run pauses again")
        if s2.button("Step", icon=":material/skip_next:", key=prefix + "btn_step", disabled=run.state != "paused",
                     help="Train these batches of the paused run, then pause again" if run.state == "paused" else
                     "Pause the run first: Step trains a paused run a few batches at a time"):
            step(registry, run, int(n), prefix)
        pace = s3.select_slider("Speed (steps a second)", steering.PACES, key=prefix + "pace",
                                format_func=lambda p: "full speed" if p == 0 else f"{p:g}",
                                help="Slow the run down to watch a change take effect; the waiting is not counted "
                                     "as training time")
        if st.session_state.get(prefix + "pace_sent") != (run.id, pace):      # read here, sent once per value
            try:
                registry.send(run.id, steering.Pace(float(pace)))
                st.session_state[prefix + "pace_sent"] = (run.id, pace)
            except ValueError as e:
                view = registry.view(run.id)
                if view is not None and view.state in ("running", "paused"):
                    st.error(f"**Speed unchanged.** {e}", icon=":material/block:")
                # else the run ended since this page read it: its speed no longer matters


def pause(registry, run_id: str) -> None:
    """Pause the run and wait a moment for the record it makes as it pauses, so the page then shows the step it
    stopped at (a Step counts from there)."""
    registry.pause(run_id)
    last, deadline = None, time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        time.sleep(0.1)
        view = registry.view(run_id)
        now = view.snapshot.last.step if view is not None and view.snapshot.last else None
        if view is None or view.state != "paused" or (now is not None and now == last):
            break
        last = now


def step(registry, run, n: int, prefix: str) -> None:
    """Train `n` batches of the paused run, wait a moment for them, and redraw the page."""
    before = run.snapshot.last.step if run.snapshot.last else 0
    try:
        registry.send(run.id, steering.Step(n))
    except ValueError as e:
        st.error(f"**No step.** {e}", icon=":material/block:")
        return
    st.session_state[prefix + "step_to"] = (run.id, before + n)
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        view = registry.view(run.id)
        if view is None or view.state != "paused" or (view.snapshot.last and view.snapshot.last.step >= before + n):
            break
        time.sleep(0.05)
    st.rerun()
