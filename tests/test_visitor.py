"""The visitor across reloads: the lockers the server keeps (unit), and in a real browser a finished run and the
active model surviving F5 on another page and a new tab, never reaching a second browser."""
from __future__ import annotations

import re
import secrets

import pytest

from ui import visitor
from ui.visitor import Lockers


def test_a_token_has_the_form_the_cookie_is_checked_against():
    assert all(visitor.TOKEN.fullmatch(secrets.token_urlsafe(24)) for _ in range(200))
    for forged in ("", "x" * 31, "x" * 33, "a" * 31 + ";", "<script>alert(1)</script>" + "a" * 7):
        assert not visitor.TOKEN.fullmatch(forged)


def test_a_locker_is_found_again_by_its_token_and_by_no_other():
    lockers = Lockers()
    a, b = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    lockers.get(a).values["app.active"] = "session:mine"
    assert lockers.get(a).values == {"app.active": "session:mine"}
    assert lockers.get(b).values == {} and len(lockers) == 2


def test_lockers_are_bounded_by_idle_time_and_count(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(visitor.time, "monotonic", lambda: now[0])
    lockers = Lockers(idle_s=60, most=3)
    for name in "abc":
        lockers.get(name * 32).values["k"] = name
        now[0] += 1
    lockers.get("a" * 32)                          # seen again: now the most recent
    lockers.get("d" * 32)                          # a fourth: the least recently seen ("b") goes
    assert lockers.get("a" * 32).values == {"k": "a"} and lockers.get("c" * 32).values == {"k": "c"}
    assert lockers.get("b" * 32).values == {}       # gone, so a new empty one
    now[0] += 61                                   # everyone idle longer than a minute
    assert lockers.get("a" * 32).values == {} and len(lockers) == 1


# ---------------------------------------------------------------------------------------------- in a browser
@pytest.mark.browser
def test_a_reload_on_another_page_keeps_the_run_and_the_active_model(browser, server):
    from playwright.sync_api import expect

    from browser_support import START, STARTUP_S, TRAIN_S, VIEWPORT, wait_idle

    def own(page) -> list[str]:
        page.get_by_test_id("stSidebar").get_by_test_id("stSelectbox").click()
        options = page.get_by_role("option").all_inner_texts()
        page.keyboard.press("Escape")
        return [o for o in options if o.strip().endswith("(yours)")]

    def active(page) -> str:
        box = page.get_by_test_id("stSidebar").get_by_test_id("stSelectbox")
        return box.get_by_role("combobox").input_value()

    context = browser.new_context(viewport=VIEWPORT)
    other = browser.new_context(viewport=VIEWPORT)
    try:
        page = context.new_page()
        page.goto(server + "/train?preset=keras-784-32&epochs=1", timeout=STARTUP_S * 1000)
        page.get_by_role("button", name=START).wait_for(timeout=STARTUP_S * 1000)
        wait_idle(page)
        page.get_by_role("button", name=START).click()
        expect(page.get_by_test_id("stProgress").last).to_contain_text(re.compile(r"^finished"), timeout=TRAIN_S * 1000)
        wait_idle(page)
        mine = own(page)
        assert len(mine) == 1 and "keras-784-32" in mine[0], mine
        assert "(yours)" in active(page)

        page.goto(server + "/compare", timeout=STARTUP_S * 1000)
        page.get_by_role("heading", name=re.compile("Compare")).first.wait_for(timeout=STARTUP_S * 1000)
        wait_idle(page)
        page.reload()                                                     # F5 on Compare
        page.get_by_role("heading", name=re.compile("Compare")).first.wait_for(timeout=STARTUP_S * 1000)
        wait_idle(page)
        assert own(page) == mine, "the reload lost the visitor's run"
        assert "(yours)" in active(page), "the reload lost the active model"
        expect(page.get_by_test_id("stMain")).to_contain_text("keras-784-32 · epochs 1")

        tab = context.new_page()                                          # a new tab of the same browser
        tab.goto(server + "/train", timeout=STARTUP_S * 1000)
        tab.get_by_role("button", name=START).wait_for(timeout=STARTUP_S * 1000)
        wait_idle(tab)
        assert own(tab) == mine
        expect(tab.get_by_test_id("stProgress").last).to_contain_text(re.compile(r"^finished"), timeout=60_000)

        stranger = other.new_page()                                       # another browser: nothing of it
        stranger.goto(server + "/compare", timeout=STARTUP_S * 1000)
        stranger.get_by_role("heading", name=re.compile("Compare")).first.wait_for(timeout=STARTUP_S * 1000)
        wait_idle(stranger)
        assert own(stranger) == []
        assert "keras-784-32 · epochs 1" not in stranger.get_by_test_id("stMain").inner_text()
        cookies = {c["name"]: c["value"] for c in context.cookies()}
        assert visitor.TOKEN.fullmatch(cookies.get(visitor.COOKIE, ""))
        assert cookies[visitor.COOKIE] not in stranger.content()
    finally:
        context.close()
        other.close()


# ---------------------------------------------------------------------------------------------- AppTest
@pytest.mark.usefixtures("app_environment")
def test_a_run_that_ends_on_another_page_is_offered_not_forced(tiny_idx, started_jobs):
    """Point 7: the badge reads what Train reads; a run ending while Compare shows keeps Compare's model, and the
    sidebar offers the new one."""
    import time

    from app_helpers import WAIT, custom_form, goto, open_app, texts

    at = custom_form(open_app(), hidden=8, epochs=20, batch=1)       # 2,400 steps: a few seconds
    at.button(key="train.btn_start").click().run()
    job = started_jobs[0]
    deadline = time.monotonic() + WAIT
    while True:                                          # the badge shows the Train page's figures
        at.run()
        bar = [p.proto.text for p in at.get("progress")]
        badge = "\n".join(texts(at.sidebar.info))
        last = job.snapshot().last
        if bar and bar[0].startswith("running") and last is not None and "epoch" in badge:
            break
        assert time.monotonic() < deadline, (bar, badge)
        time.sleep(0.1)
    shown = int(re.search(r"(\d+)%", badge).group(1))
    progress = int(re.search(r"(\d+)%", bar[0]).group(1)) if "%" in bar[0] else None
    assert progress is None or abs(shown - progress) <= 5, (badge, bar)

    before = at.sidebar.selectbox(key="app.active").value
    goto(at, "app_pages/compare.py")
    assert job.join(WAIT)
    at.run()                                             # the badge's poll: the run has ended
    assert not at.exception
    assert at.sidebar.selectbox(key="app.active").value == before        # not switched under the visitor
    offer = "\n".join(texts(at.sidebar.success))
    assert "Your run ended" in offer and "custom" in offer, offer
    at.sidebar.button(key="app.use_new_model").click().run()
    assert at.sidebar.selectbox(key="app.active").value.startswith("session:custom")
    assert not at.sidebar.success                                          # offered once
