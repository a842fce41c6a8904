"""A small run of the load benchmark (`python -m aecore.loadtest`): the structural truths, never its speed.

Three sessions, two of them press Start together on a server that trains one run at a time: the cap holds,
the other run waits in the queue and starts by itself, a reload reattaches to the run in the URL, and no
session sees another's runs or models. Skipped when Chromium or the real MNIST files (AECORE_DATA_DIR) are
missing; about two and a half minutes.
"""
from __future__ import annotations

import json

import pytest

from browser_support import chromium_path

pytestmark = [pytest.mark.browser, pytest.mark.mnist, pytest.mark.slow]   # mnist: keeps AECORE_DATA_DIR for the server


def test_small_load_run(tmp_path, capsys):
    pytest.importorskip("playwright")
    if chromium_path() is None:
        pytest.skip("chromium not installed (/usr/bin/chromium or `chromium` on PATH)")
    from aecore import loadtest

    out = tmp_path / "loadtest.json"
    code = loadtest.main(["--sessions", "3", "--start", "2", "--max-runs", "1", "--epochs", "4", "--grace", "5",
                          "--timeout", "300", "--chromium", chromium_path(), "--out", str(out)])
    result = json.loads(out.read_text())
    print(capsys.readouterr().out)
    assert code == 0 and "error" not in result, result.get("error")

    assert result["page_render_s"]["n"] == 3
    assert result["ran_at_once"] <= 1, result
    assert result["first_metric_after_start_s"]["n"] == 1, result   # the run that got the one slot, timed
    assert 0 < result["first_metric_after_start_s"]["max"] < 300, result
    assert result["first_metric_after_start_s"]["each"] == [result["first_metric_after_start_s"]["max"]], result
    answered = result["start_answered_after_s"]      # both Starts answered (the URL names the new run) ...
    assert answered["n"] == 2 and 0 < min(answered["each"]), result
    assert min(answered["each"]) <= result["first_metric_after_start_s"]["max"], result   # ... before a step shows
    [timed] = result["timed_runs"]     # the server's marks for it: handed to the registry, then a step drawn ...
    assert 0 < timed["submitted"] <= timed["drawn"] <= timed["shown"] + 0.05, timed   # ... before the page showed it
    assert timed["shown"] == result["first_metric_after_start_s"]["max"], timed
    assert any("running" in text for _, text in timed["texts"]), timed
    assert result["queued_seen"] >= 1 and 1 in result["queued_positions_seen"], result
    assert result["queued_started_by_itself"] is True, result
    assert result["reload"]["tries"] >= 1 and result["reload"]["reattached"] == 1.0, result["reload"]
    assert result["cross_session_leaks"]["violations"] == 0, result["cross_session_leaks"]
