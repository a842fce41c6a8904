"""A class in a real Chromium: one teacher creates it, three students (three browsers: three visitors) join with
their nicknames, train for it in the class's locked form, and their finished runs land on the board by themselves;
the teacher sees the three, closes the class, and a student is told.

Screenshots of the teacher's and a student's page go to tests/artifacts/screenshots/ (or AELAB_SCREENSHOTS, which
refreshes the README's). Skipped when Chromium or the real MNIST files (AECORE_DATA_DIR) are missing.
"""
from __future__ import annotations

import contextlib
import os
import re

import pytest

from browser_support import ARTIFACTS, SCREENSHOTS, START, STARTUP_S, TRAIN_S, VIEWPORT, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.slow]
STUDENTS = ("Ada", "Grace", "Alan")


def test_one_teacher_and_three_students(chromium, browser, tmp_path):
    from playwright.sync_api import expect

    from aecore.loadtest import Deadline, serve

    env = dict(os.environ, AELAB_MAX_RUNS="2", AELAB_STORE=str(tmp_path / "store"))
    contexts = [browser.new_context(viewport=VIEWPORT) for _ in range(1 + len(STUDENTS))]
    for c in contexts:
        c.set_default_timeout(60_000)
    teacher, *students = [c.new_page() for c in contexts]
    try:
        with serve(env, ARTIFACTS / "test_browser_class.streamlit.log", Deadline(STARTUP_S + 60)) as (url, _):
            # -- the teacher creates a class: one epoch at most, test loss, from the Keras preset
            teacher.goto(f"{url}/classroom", timeout=STARTUP_S * 1000)
            teacher.get_by_role("heading", name="Create a class").wait_for(timeout=STARTUP_S * 1000)
            teacher.get_by_label("Title (the students see it)").fill("Autoencoders, week 3")
            epochs = teacher.get_by_label("At most epochs (0: no limit)")
            epochs.fill("1")
            epochs.press("Tab")
            teacher.get_by_role("button", name=re.compile(r"Create the class$")).click()
            teacher.get_by_role("heading", name="Autoencoders, week 3").wait_for()
            link = teacher.get_by_text(re.compile(r"/classroom\?class=[A-Z2-9]{8}$")).first.inner_text()
            code = link.split("=")[1]
            assert link.startswith(url)                             # the whole address, ready to share
            assert "teacher=" not in teacher.url                   # the secret stays out of the address bar

            # -- three students join and start a run each, for the class
            for page, name in zip(students, STUDENTS):
                page.goto(f"{url}/classroom?class={code}", timeout=STARTUP_S * 1000)
                page.get_by_label("Your nickname (the board shows it)").fill(name)
                page.get_by_role("button", name=re.compile(r"Join$")).click()
                page.get_by_text(f"You are {name} in this class.").wait_for()
                page.get_by_role("button", name=re.compile(r"Train for this class$")).click()
                page.get_by_role("heading", name="Train an autoencoder").wait_for(timeout=STARTUP_S * 1000)
                expect(page.get_by_text(f"you are {name}")).to_be_visible()
                wait_idle(page)
                page.get_by_role("button", name=START).click()
                expect(page.get_by_test_id("stProgress").last).to_contain_text(re.compile(r"epoch 1/1"),
                                                                               timeout=TRAIN_S * 1000)
            for page in students:
                expect(page.get_by_test_id("stProgress").last).to_contain_text("finished", timeout=TRAIN_S * 1000)
            screenshot(students[0], "class-student")

            # -- the board: three runs, ranked; the teacher closes the class
            teacher.reload()
            expect(teacher.get_by_text(re.compile(r"3 students · 3 runs on the board"))).to_be_visible(
                timeout=TRAIN_S * 1000)
            board = teacher.get_by_test_id("stDataFrame").first
            board.wait_for()
            wait_idle(teacher)
            screenshot(teacher, "class-board")
            teacher.get_by_role("button", name=re.compile(r"Close the class to new runs$")).click()
            expect(teacher.get_by_text("This class is closed to new runs.")).to_be_visible()
            students[1].goto(f"{url}/classroom?class={code}")
            expect(students[1].get_by_text("This class is closed to new runs.")).to_be_visible(
                timeout=STARTUP_S * 1000)
            expect(students[1].get_by_role("button", name=re.compile(r"Train for this class$"))).to_be_disabled()
    except BaseException:
        with contextlib.suppress(Exception):
            teacher.screenshot(path=ARTIFACTS / "test_browser_class-failure.png", full_page=True)
        raise
    finally:
        for c in contexts:
            c.close()


def screenshot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    height = page.evaluate("() => document.querySelector('[data-testid=stMain]')?.scrollHeight || 0")
    page.set_viewport_size({"width": VIEWPORT["width"], "height": max(VIEWPORT["height"], min(int(height), 4000))})
    try:
        page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)
    finally:
        page.set_viewport_size(VIEWPORT)
