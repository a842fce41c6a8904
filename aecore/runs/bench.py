"""Benchmark: the run backends (threads, processes, ray) measured side by side in one process.

    python -m aecore.runs.bench [--backends threads,processes,ray] [--repeats 3] [--epochs 1] [--data-dir DIR]
                                [--ray-address local|auto|host:port] [--device cpu|cuda] [--concurrent N]
                                [--out FILE.json]

Each backend gets a `RunRegistry` of its own and trains pytorch-784-200 on MNIST on --device (the CPU by default), one run at a time,
driven as a page drives it: `submit`, then `view(run_id)` every 10 ms. For each backend:
- start to first metric: seconds from just before `submit` until the view holds a record, median and min over
  --repeats runs, and how long `submit` itself took (the page waits for it). Every run but the last is stopped
  once it has one, and has let go of its worker (and its actor) before the next is submitted, so that runs
  never share the CPUs.
- the cost of one poll while the last run trains: `view()` (mean and p95, ms); for ray, in the same rounds, the
  round trip of one actor poll that asks only for records the view lacks, and how far the view lags the actor then
  (records, and seconds of training; the registry's relay polls the actor every `cluster.POLL_S`).
- the last run to its end: fit's own samples/s (samples / elapsed of its last record), and the wall time from
  submit until the view says "finished".
With --concurrent N, each backend instead trains one run alone, then N runs submitted at once on the default cap
(one per core), and reports `single_samples_per_s`, `aggregate_samples_per_s` and `aggregate_vs_single` (samples
over wall time from submit to finished, on both sides). Each backend is measured once it is ready (the processes
backend's warm processes have imported torch), as a server is a few seconds after it started.
With --ray-address local (the default) a Ray instance of 2 CPUs is started here and shut down afterwards; any
other address is joined with `cluster.connect`. Without Ray installed the ray backend is reported as skipped.
Prints one JSON object per backend (progress on stderr); --out writes them all with the machine's facts.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from aecore.engine import presets
from aecore.argv import OneLineParser, positive_int
from aecore.engine.data import Data, DataError, load
from aecore.runs import cluster
from aecore.engine.train import RunSpec
from aecore.runs.registry import ENDED, RunRegistry
from aecore.runs.settings import BACKENDS, RegistryConfig, cpu_slots

PRESET = "pytorch-784-200"
EVERY_S = 0.01          # the poll interval: a page could not ask more often than this
LOCAL_CPUS = 2          # the local Ray instance, as tests/test_ray.py starts it
GRACE_S = 600.0         # nobody heartbeats here: the grace time must outlast any run of the benchmark
WARM_S = 120.0          # how long a backend may take to be ready (the processes backend warms one process per slot)


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def bench_spec(epochs: int = 1, device: str = "cpu") -> RunSpec:
    """pytorch-784-200 on `device` for `epochs` epochs."""
    pre = presets.get(PRESET)
    return RunSpec(name=f"bench-{PRESET}", model=pre.model, data=pre.data,
                   train=replace(pre.train, epochs=epochs, device=device), preset=PRESET)


# ---------------------------------------------------------------------------------------------- waiting
def wait_view(registry: RunRegistry, run_id: str, done, timeout_s: float, what: str):
    """The run's view once `done(view)` holds, polled every EVERY_S; TimeoutError naming `what` otherwise."""
    deadline = time.monotonic() + timeout_s
    while True:
        view = registry.view(run_id)
        if view is None:
            raise RuntimeError(f"{what}: run {run_id} is no longer in the registry")
        if done(view):
            return view
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: the run is still {view.state} after {timeout_s:g} s")
        time.sleep(EVERY_S)


def ray_actor(run_id: str):
    """The run's actor on the cluster, or None once it has exited."""
    ray = cluster.import_ray()
    try:
        return ray.get_actor(run_id, namespace=cluster.NAMESPACE)
    except ValueError:
        return None


def settle(registry: RunRegistry, run_id: str, timeout_s: float) -> None:
    """Wait until an ended run holds nothing: its worker thread (and process) is done and, on Ray, its actor has
    exited. The view says "stopped" a moment before either, and the next run must not share the CPUs with it."""
    deadline = time.monotonic() + timeout_s
    while registry.counts()["running"] or (registry.config.backend == "ray" and ray_actor(run_id) is not None):
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {run_id} ended but still holds its worker after {timeout_s:g} s")
        time.sleep(5 * EVERY_S)


# ---------------------------------------------------------------------------------------------- measuring
def first_metric(registry: RunRegistry, spec: RunSpec, data: Data, visitor: str,
                 timeout_s: float) -> tuple[str, float, float, float]:
    """Submit a run: (its id, perf_counter just before submit, seconds `submit` itself took (the caller waits,
    and every other view() with it: it holds the registry's lock), seconds until its view held a record)."""
    started = time.perf_counter()
    run_id = registry.submit(spec, data, visitor)
    submit_s = time.perf_counter() - started
    view = wait_view(registry, run_id, lambda v: v.snapshot.records or v.state in ENDED, timeout_s, "first metric")
    seconds = time.perf_counter() - started
    if not view.snapshot.records:
        raise RuntimeError(f"the run ended {view.state} before its first metric: "
                           f"{view.snapshot.error or view.stop_reason}")
    return run_id, started, submit_s, seconds


def view_overhead(registry: RunRegistry, run_id: str, calls: int = 200) -> dict:
    """Wall time of one `view(run_id)` while the run trains: up to `calls` of them, EVERY_S apart."""
    times = []
    while len(times) < calls:
        t = time.perf_counter()
        view = registry.view(run_id)
        elapsed = time.perf_counter() - t
        if view.state != "running":
            break
        times.append(elapsed)
        time.sleep(EVERY_S)
    if not times:
        raise RuntimeError("the run ended before one view() could be timed; it needs more epochs")
    return _view_figures(times)


def _view_figures(times: list[float]) -> dict:
    return {"view_mean_ms": 1e3 * statistics.fmean(times), "view_p95_ms": 1e3 * float(np.percentile(times, 95)),
            "view_calls": len(times)}


def actor_poll_overhead(registry: RunRegistry, run_id: str, calls: int = 100) -> dict:
    """Round trip of one poll of the run's actor, asking for what the view lacks (as the relay asks for what it
    lacks), and the view's lag behind the actor at that moment: the records it has not got yet, and the
    seconds of training between its last record and the actor's. Each round also times the `view()` it reads
    the view's records with: one loop for both, since a fast run may not outlast two loops one after the other."""
    ray = cluster.import_ray()
    actor = ray.get_actor(run_id, namespace=cluster.NAMESPACE)
    times, views, behind, lag_s = [], [], [], []
    while len(times) < calls:
        t = time.perf_counter()
        held = registry.view(run_id).snapshot.records
        view_s = time.perf_counter() - t
        n = len(held)
        t = time.perf_counter()
        try:
            # n frames too: at most one frame per epoch exists, so none comes back and only records travel
            new = ray.get(actor.poll.remote(n, n, True))
        except ray.exceptions.RayActorError:      # the run has ended and its actor exited meanwhile
            break
        elapsed = time.perf_counter() - t
        if new["state"] != "running":
            break
        times.append(elapsed)
        views.append(view_s)
        behind.append(len(new["records"]))
        lag_s.append(new["records"][-1].elapsed - held[-1].elapsed if new["records"] and held else 0.0)
        time.sleep(EVERY_S)
    if not times:
        raise RuntimeError("the run ended before one actor poll could be timed; it needs more epochs")
    return {**_view_figures(views), "actor_poll_mean_ms": 1e3 * statistics.fmean(times),
            "actor_poll_p95_ms": 1e3 * float(np.percentile(times, 95)), "actor_poll_calls": len(times),
            "stale_records_mean": statistics.fmean(behind), "stale_records_max": max(behind),
            "stale_s_mean": statistics.fmean(lag_s), "stale_s_max": max(lag_s), "relay_poll_s": cluster.POLL_S}


def measure(registry: RunRegistry, spec: RunSpec, data: Data, repeats: int = 3, view_calls: int = 200,
            actor_calls: int = 100, timeout_s: float = 600.0, visitor: str = "bench") -> dict:
    """Every figure of one backend (the registry's), from `repeats` runs of `spec` on `data`, one at a time. The
    last run's polls: `view_calls` views, or on Ray `actor_calls` rounds of an actor poll and a view."""
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    backend = registry.config.backend
    out: dict = {"backend": backend, "device": spec.train.device, "repeats": repeats, "epochs": spec.train.epochs}
    firsts: list[float] = []
    submits: list[float] = []
    run_id = None
    try:
        for i in range(repeats):
            run_id, started, submit_s, seconds = first_metric(registry, spec, data, f"{visitor}-{backend}-{i}",
                                                              timeout_s)
            firsts.append(seconds)
            submits.append(submit_s)
            say(f"{backend}: run {i + 1}/{repeats}: first metric after {seconds:.3f} s (submit {submit_s:.3f} s)")
            if i < repeats - 1:
                registry.stop(run_id, reason="the benchmark has its first metric")
                wait_view(registry, run_id, lambda v: v.state in ENDED, timeout_s, "stopping")
                settle(registry, run_id, timeout_s)
                continue
            out.update(actor_poll_overhead(registry, run_id, actor_calls) if backend == "ray" else
                       view_overhead(registry, run_id, view_calls))
            view = wait_view(registry, run_id, lambda v: v.state in ENDED, timeout_s, "the last run")
            wall = time.perf_counter() - started
            if view.state != "finished":
                raise RuntimeError(f"the last run ended {view.state}: {view.snapshot.error or view.stop_reason}")
            last = view.snapshot.last
            out.update(samples=last.samples, train_s=last.elapsed, samples_per_s=last.samples / last.elapsed,
                       wall_s=wall)
            say(f"{backend}: {out['samples_per_s']:,.0f} samples/s, {wall:.1f} s from submit to finished")
            settle(registry, run_id, timeout_s)
    finally:
        view = registry.view(run_id) if run_id is not None else None
        if view is not None and view.active:   # a failure midway: the run must not outlive the benchmark
            registry.stop(run_id, reason="the benchmark failed")
    out.update(first_metric_s=firsts, first_metric_median_s=statistics.median(firsts),
               first_metric_min_s=min(firsts), submit_s=submits, submit_median_s=statistics.median(submits))
    return out


def concurrent(registry: RunRegistry, spec: RunSpec, data: Data, n: int, timeout_s: float = 1800.0,
               visitor: str = "bench") -> dict:
    """Fair sharing: one run alone, then `n` runs submitted at once (n visitors; the registry's cap admits some,
    queues the rest). Both sides are samples over wall time, from submit to the view saying "finished": the
    starts, the queue's hand-overs and each run's final figures count against them. The run alone is the second
    of two: the first pays what only a server's first run pays (writing the shared data, torch's first use)."""
    for attempt in ("warm-up", "alone"):
        started = time.perf_counter()
        alone = registry.submit(spec, data, f"{visitor}-{attempt}")
        view = wait_view(registry, alone, lambda v: v.state in ENDED, timeout_s, f"the run {attempt}")
        single_s = time.perf_counter() - started
        if view.state != "finished":
            raise RuntimeError(f"the run {attempt} ended {view.state}: {view.snapshot.error or view.stop_reason}")
        settle(registry, alone, timeout_s)
    say(f"one run alone: {view.snapshot.last.samples / single_s:,.0f} samples/s, {single_s:.1f} s")
    started = time.perf_counter()
    ids = [registry.submit(spec, data, f"{visitor}-{i}") for i in range(n)]
    views = [wait_view(registry, i, lambda v: v.state in ENDED, timeout_s, f"run {k + 1} of {n}")
             for k, i in enumerate(ids)]
    wall = time.perf_counter() - started
    bad = [v for v in views if v.state != "finished"]
    if bad:
        raise RuntimeError(f"{len(bad)} of the {n} runs did not finish: {bad[0].snapshot.error or bad[0].stop_reason}")
    samples = sum(v.snapshot.last.samples for v in views)
    single = view.snapshot.last.samples / single_s
    out = {"backend": registry.config.backend, "device": spec.train.device, "concurrent": n,
           "max_runs": registry.config.max_runs, "epochs": spec.train.epochs, "single_samples_per_s": single,
           "aggregate_samples_per_s": samples / wall, "aggregate_vs_single": samples / wall / single,
           "wall_s": wall, "single_wall_s": single_s,
           "per_run_fit_samples_per_s": [v.snapshot.last.samples / v.snapshot.last.elapsed for v in views]}
    say(f"{n} runs at once: {out['aggregate_samples_per_s']:,.0f} samples/s in all, "
        f"{out['aggregate_vs_single']:.2f} of one alone")
    return out


# ---------------------------------------------------------------------------------------------- backends
@contextlib.contextmanager
def ray_connection(address: str):
    """This process connected to Ray: `local` starts an instance of LOCAL_CPUS CPUs here (shut down on the way
    out), any other address is joined. RayUnavailable when Ray is not installed or cannot be reached."""
    ray = cluster.import_ray()
    if address != "local":
        cluster.connect(address)
        yield
        return
    cluster.disconnect()
    # "local": a new instance even where a `ray start` cluster runs on this machine (ray.init would join it)
    ray.init(address="local", num_cpus=LOCAL_CPUS, include_dashboard=False, **cluster.init_options())
    try:
        yield
    finally:
        cluster.disconnect()
        ray.shutdown()


def run_backend(backend: str, spec: RunSpec, data: Data, repeats: int = 3, ray_address: str = "local",
                n_concurrent: int = 0, **measure_options) -> dict:
    """`measure` (or, with `n_concurrent`, `concurrent`) for one backend in a registry of its own, once the
    backend is ready (its warm processes, as a server that has been up a few seconds has them); {"backend",
    "skipped"} when Ray is missing or unreachable, {"backend", "error"} when the benchmark itself fails (the other
    backends still run)."""
    try:
        with ray_connection(ray_address) if backend == "ray" else contextlib.nullcontext():
            registry = RunRegistry(RegistryConfig(backend=backend, ray_address=ray_address, grace_s=GRACE_S))
            try:
                if not registry.backend.wait_ready(WARM_S):
                    raise TimeoutError(f"the {backend} backend was not ready after {WARM_S:g} s")
                if n_concurrent:
                    return concurrent(registry, spec, data, n_concurrent)
                return measure(registry, spec, data, repeats, **measure_options)
            finally:
                registry.shutdown(wait=30)
    except cluster.RayUnavailable as e:
        return {"backend": backend, "skipped": str(e)}
    except Exception as e:
        return {"backend": backend, "error": f"{type(e).__name__}: {e}"}


def machine() -> dict:
    try:
        import ray
        ray_version = ray.__version__
    except ImportError:
        ray_version = None
    return {"cpu_count": os.cpu_count(), "cpus_usable": cpu_slots(), "torch": torch.__version__, "ray": ray_version,
            "python": platform.python_version(), "platform": platform.platform(), "loadavg_before": os.getloadavg()}


def rounded(value):
    """Floats to 4 significant digits for the JSON (a small positive figure stays positive)."""
    if isinstance(value, float) and math.isfinite(value):
        return float(f"{value:.4g}")
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------------- command line
def _backends(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in BACKENDS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of {', '.join(BACKENDS)}; got {text!r}")
    return names


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m aecore.runs.bench", description=__doc__.splitlines()[0])
    p.add_argument("--backends", type=_backends, default=("threads", "processes", "ray"),
                   help="comma-separated, measured in this order (default threads,processes,ray)")
    p.add_argument("--repeats", type=positive_int, default=3, help="runs per backend for the first-metric latency")
    p.add_argument("--epochs", type=positive_int, default=1, help="epochs of the last run (the samples/s figure)")
    p.add_argument("--data-dir", help="folder with the MNIST IDX files (else $AECORE_DATA_DIR, ./data)")
    p.add_argument("--ray-address", default="local",
                   help="local (a Ray instance of 2 CPUs started here), auto, or a cluster head's host:port")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                   help="where each run trains (cuda: the workers hold the GPU, this process never does)")
    p.add_argument("--concurrent", type=positive_int, default=0, metavar="N",
                   help="instead: one run alone, then N runs started at once on the default cap (fair sharing)")
    p.add_argument("--out", help="also write every backend's figures and the machine's facts to this JSON file")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    spec = bench_spec(args.epochs, args.device)
    try:
        data = load(spec.data, args.data_dir)
    except DataError as e:
        print(f"aecore.runs.bench: {e}", file=sys.stderr)
        return 1
    facts = machine()
    results = []
    for backend in args.backends:
        say(f"{backend}: {args.repeats} runs of {PRESET}, {args.epochs} epoch(s) for the last")
        result = rounded(run_backend(backend, spec, data, args.repeats, args.ray_address, args.concurrent))
        print(json.dumps(result), flush=True)
        results.append(result)
    facts["loadavg_after"] = os.getloadavg()
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        settings = {"preset": PRESET, "device": args.device, "epochs": args.epochs, "repeats": args.repeats,
                    "concurrent": args.concurrent, "poll_every_s": EVERY_S,
                    "ray_address": args.ray_address, "train_samples": len(data.train)}
        Path(args.out).write_text(json.dumps({"machine": rounded(facts), "settings": settings, "backends": results},
                                             indent=2) + "\n")
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
