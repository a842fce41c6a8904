"""The run backends' benchmark (`python -m aecore.runs.bench`) on tiny synthetic data: it reports every figure
it documents, each positive and finite, and leaves no run behind; never how fast a backend is. The ray backend
runs on a local Ray instance of 2 CPUs started by the benchmark's own `ray_connection` (skipped without Ray),
and is reported as skipped, with the install command, when Ray cannot be imported.
"""
from __future__ import annotations

import json
import math

import pytest

from aecore.engine.data import DataConfig
from aecore.engine.models import ModelConfig
from aecore.runs import RegistryConfig, RunRegistry, RunSpec, bench, cluster
from aecore.engine.train import TrainConfig

from idx_helpers import tiny_data

COMMON = ("first_metric_median_s", "first_metric_min_s", "submit_median_s", "view_mean_ms", "view_p95_ms",
          "samples_per_s", "train_s", "wall_s")
RAY_ONLY = ("actor_poll_mean_ms", "actor_poll_p95_ms")
STALENESS = ("stale_records_mean", "stale_records_max", "stale_s_mean", "stale_s_max")
VIEW_CALLS, ACTOR_CALLS = 20, 10


@pytest.fixture(scope="module")
def data():
    return tiny_data(n_train=400, n_test=50)


def spec(epochs=60) -> RunSpec:
    """About a second of training after the first metric: time for the polls to be timed while it trains."""
    return RunSpec(name="tiny", model=ModelConfig(family="shallow", hidden=(8,)), data=DataConfig(),
                   train=TrainConfig(epochs=epochs, batch_size=20, log_every=2, device="cpu"))


def positive_finite(result: dict, keys) -> None:
    for key in keys:
        assert isinstance(result[key], (int, float)) and math.isfinite(result[key]) and result[key] > 0, \
            (key, result[key])


def check_common(result: dict, backend: str, repeats: int, epochs: int, view_calls: int = VIEW_CALLS) -> None:
    assert "error" not in result and "skipped" not in result, result
    assert result["backend"] == backend and result["repeats"] == repeats and result["epochs"] == epochs
    positive_finite(result, COMMON)
    assert len(result["first_metric_s"]) == repeats and min(result["first_metric_s"]) == result["first_metric_min_s"]
    assert len(result["submit_s"]) == repeats and all(s <= f for s, f in zip(result["submit_s"],
                                                                             result["first_metric_s"]))
    assert result["view_calls"] == view_calls, "every view() was timed while the run trained"
    assert result["samples"] == epochs * 400, "the last run trained to its end"
    assert result["samples_per_s"] == pytest.approx(result["samples"] / result["train_s"])
    assert result["wall_s"] >= result["train_s"]


def test_threads_backend_reports_every_figure_and_runs_one_run_at_a_time(data):
    registry = RunRegistry(RegistryConfig(backend="threads", grace_s=bench.GRACE_S))
    try:
        result = bench.measure(registry, spec(), data, repeats=2, view_calls=VIEW_CALLS, actor_calls=ACTOR_CALLS)
        check_common(result, "threads", repeats=2, epochs=60)
        assert not set(RAY_ONLY + STALENESS) & set(result), "actor polls exist on Ray only"
        assert registry.counts() == {"running": 0, "queued": 0, "ended": 2, "kept": 2}
        states = sorted(v.state for v in (registry.view(i) for i in list(registry._runs)))
        assert states == ["finished", "stopped"], "the first run was stopped at its first metric"
    finally:
        registry.shutdown(wait=10)
    json.dumps(bench.rounded(result))       # what main prints


@pytest.mark.ray
@pytest.mark.slow
def test_ray_backend_reports_actor_polls_and_staleness(data):
    ray = pytest.importorskip("ray")
    result = bench.run_backend("ray", spec(), data, repeats=1, view_calls=VIEW_CALLS, actor_calls=ACTOR_CALLS)
    check_common(result, "ray", repeats=1, epochs=60, view_calls=ACTOR_CALLS)   # a view() in each poll's round
    positive_finite(result, RAY_ONLY)
    assert result["actor_poll_calls"] == ACTOR_CALLS
    for key in STALENESS:
        assert math.isfinite(result[key]) and result[key] >= 0, (key, result[key])
    assert result["stale_records_max"] >= result["stale_records_mean"]
    assert result["relay_poll_s"] == cluster.POLL_S
    assert not ray.is_initialized(), "the local Ray instance was shut down"


def test_ray_backend_is_skipped_when_ray_is_missing(data, monkeypatch):
    def missing():
        raise cluster.RayUnavailable(f"Ray is not installed. Install it with: {cluster.INSTALL}")
    monkeypatch.setattr(cluster, "import_ray", missing)
    result = bench.run_backend("ray", spec(), data, repeats=1)
    assert result == {"backend": "ray", "skipped": f"Ray is not installed. Install it with: {cluster.INSTALL}"}


def test_command_line_writes_every_backend_and_the_machine(mnist_dir, tmp_path, capsys):
    out = tmp_path / "bench.json"
    # 64 images, one step per epoch: 300 epochs keep the run training while its polls are timed
    code = bench.main(["--backends", "threads", "--repeats", "1", "--epochs", "300", "--data-dir", str(mnist_dir),
                       "--out", str(out)])
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0, printed
    written = json.loads(out.read_text())
    assert written["backends"] == printed and printed[0]["backend"] == "threads"
    assert written["settings"]["train_samples"] == 64 and written["settings"]["preset"] == bench.PRESET
    assert {"cpu_count", "torch", "ray", "loadavg_before", "loadavg_after"} <= set(written["machine"])
    positive_finite(printed[0], COMMON)


@pytest.mark.parametrize("argv, message", [
    (["--backends", "threads,gpu"], "--backends: expected a comma-separated list"),
    (["--repeats", "0"], "--repeats: expected a whole number >= 1"),
])
def test_bad_options_exit_with_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        bench.main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, err
