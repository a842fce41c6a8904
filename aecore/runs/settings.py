"""How the run service is configured: caps, grace and retention times, and the profile's limits per visitor.

`RegistryConfig.from_settings(mapping)` reads the AELAB_* keys from any mapping (the environment, Streamlit
secrets, or both merged by the caller); a bad value raises ValueError naming the key and what it accepts.

| key                   | default                       | meaning                                              |
| AELAB_PROFILE         | local                         | local: every choice open; hosted: HOSTED_LIMITS      |
| AELAB_MAX_RUNS        | one per CPU core (at least 1) | CPU trainings at once; more wait in the queue        |
| AELAB_MAX_GPU_RUNS    | one per GPU                   | GPU trainings at once                                |
| AELAB_RUN_GRACE_S     | 120                           | an unwatched run is stopped after this many seconds  |
| AELAB_RUN_RETENTION_S | 1800                          | an ended run (and its model) is kept this long       |
| AELAB_MAX_KEPT_RUNS   | 32                            | runs held at once; the oldest ended go first         |
| AELAB_RUN_BACKEND     | processes                     | processes: a process per run; threads: in-process;   |
|                       |                               | ray: a Ray actor per run (see AELAB_RAY_ADDRESS)     |
| AELAB_RAY_ADDRESS     | unset                         | train on Ray (aecore.runs.cluster): local, auto, or  |
|                       |                               | a cluster's head host:port; the cluster's resources  |
|                       |                               | are then the cap and the queue                       |
| AELAB_STORE           | <cache folder>/store          | where runs are kept across restarts (aecore.runs.    |
|                       |                               | store): a folder (SQLite), a postgresql:// URL, or   |
|                       |                               | none (memory only)                                   |
| AELAB_STORE_MAX_AGE_DAYS | 30                         | an ended run older than this leaves the store        |
| AELAB_STORE_MAX_RUNS  | 1000                          | runs in the store; the oldest ended go first         |
| AELAB_STORE_MAX_MB    | 2048                          | disk the store's models and states may take          |
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Mapping

import torch

from aecore.engine.data import cache_dir
from aecore.runs.store import Retention

PROFILES = ("local", "hosted")
BACKENDS = ("processes", "threads", "ray")


def cpu_slots() -> int:
    """One training per core this process may use, at least one."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:   # not on Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class Limits:
    """What one visitor may ask for; None leaves a choice open. Checked by the registry before it queues a run."""
    max_epochs: int | None = None
    max_params: int | None = None
    max_batch_size: int | None = None

    def problem(self, spec, params: int) -> str | None:
        """Why `spec` (a RunSpec whose model has `params` parameters) is over these limits, or None."""
        t = spec.train
        broken = []
        if self.max_epochs is not None and t.epochs > self.max_epochs:
            broken.append(f"at most {self.max_epochs} epochs (asked for {t.epochs})")
        if self.max_params is not None and params > self.max_params:
            broken.append(f"at most {self.max_params:,} parameters (this model has {params:,})")
        if self.max_batch_size is not None and t.batch_size > self.max_batch_size:
            broken.append(f"a batch size of at most {self.max_batch_size} (asked for {t.batch_size})")
        if not broken:
            return None
        return ("this server's hosted profile allows " + "; ".join(broken) +
                ". Change the form, or run AE Lab on your own machine for bigger runs.")


# A free CPU host (about 1-2.7 GB of memory, shared cores): every tutorial preset fits (the largest, the
# Chainer 1000-unit cases, has 1.57 M parameters and 20 epochs).
HOSTED_LIMITS = Limits(max_epochs=20, max_params=2_000_000, max_batch_size=1024)


@dataclass(frozen=True)
class RegistryConfig:
    """The run service's settings; see the module docstring for the keys that set them."""
    max_runs: int = field(default_factory=cpu_slots)                 # CPU trainings at once
    max_gpu_runs: int = field(default_factory=lambda: torch.cuda.device_count())   # one per GPU
    grace_s: float = 120.0          # an unwatched run is stopped after this
    retention_s: float = 1800.0     # an ended run is dropped this long after it ended and was last seen
    max_kept: int = 32              # bounded memory: runs held at once (each ended one keeps its model)
    max_queued: int = 100           # a longer queue refuses new runs
    threads_per_run: int = 1        # intra-op threads; more make runs on shared cores spin-wait (see job.py)
    backend: str = "processes"      # a process per run (aecore.runs.process), threads in the server's process,
                                    # or a Ray actor per run (aecore.runs.cluster)
    ray_address: str = "local"      # with the ray backend: local, auto, or a cluster head's host:port
    # Training threads share the interpreter with the UI. Every torch op releases the GIL and takes it back; with
    # Python's default 5 ms switch interval a busy UI thread holds it that long each time. Measured (one
    # pytorch-784-200 run beside one busy Python thread, 2 cores): 433 samples/s at 5 ms, 1,858 at 1 ms,
    # 7,015 at 0.2 ms; alone, ~22,000 at any of them. The registry sets this process-wide.
    switch_interval_s: float = 0.0002
    profile: str = "local"
    limits: Limits = Limits()
    store: str = ""                 # a folder or a postgresql:// URL where runs are kept (aecore.runs.store); "": none
    store_retention: Retention = Retention()

    def __post_init__(self):
        rules = [("max_runs", self.max_runs >= 1), ("max_gpu_runs", self.max_gpu_runs >= 0),
                 ("grace_s", self.grace_s > 0), ("retention_s", self.retention_s >= 0),
                 ("max_kept", self.max_kept >= 1), ("max_queued", self.max_queued >= 0),
                 ("threads_per_run", self.threads_per_run >= 1), ("profile", self.profile in PROFILES),
                 ("switch_interval_s", 0 < self.switch_interval_s <= 0.1), ("backend", self.backend in BACKENDS),
                 ("ray_address", bool(self.ray_address.strip()))]
        for name, ok in rules:
            if not ok:
                raise ValueError(f"RegistryConfig.{name} is out of range: {getattr(self, name)!r}")

    @classmethod
    def from_settings(cls, settings: Mapping[str, object]) -> "RegistryConfig":
        """Build from AELAB_* keys (missing keys keep their defaults)."""
        def number(key, kind, low):
            value = settings.get(key)
            if value is None or str(value).strip() == "":
                return None
            try:
                n = kind(str(value).strip())
            except ValueError:
                n = None
            if n is None or n < low:
                raise ValueError(f"{key} must be {'an integer' if kind is int else 'a number'} >= {low}, "
                                 f"got {value!r}")
            return n

        asked = str(settings.get("AELAB_RUN_BACKEND") or "").strip().lower()
        address = str(settings.get("AELAB_RAY_ADDRESS") or "").strip()
        if asked and asked not in BACKENDS:
            raise ValueError(f"AELAB_RUN_BACKEND must be one of {BACKENDS}, got {settings.get('AELAB_RUN_BACKEND')!r}")
        if address and asked not in ("", "ray"):
            raise ValueError(f"AELAB_RAY_ADDRESS={address!r} asks for the ray backend but AELAB_RUN_BACKEND is "
                             f"{asked!r}; unset one of them")
        backend = "ray" if address else (asked or "processes")
        profile = str(settings.get("AELAB_PROFILE") or "local").strip().lower()
        if profile not in PROFILES:
            raise ValueError(f"AELAB_PROFILE must be one of {PROFILES}, got {settings.get('AELAB_PROFILE')!r}")
        values = {"max_runs": number("AELAB_MAX_RUNS", int, 1),
                  "max_gpu_runs": number("AELAB_MAX_GPU_RUNS", int, 0),
                  "grace_s": number("AELAB_RUN_GRACE_S", float, 0.1),
                  "retention_s": number("AELAB_RUN_RETENTION_S", float, 0),
                  "max_kept": number("AELAB_MAX_KEPT_RUNS", int, 1)}
        values = {k: v for k, v in values.items() if v is not None}
        limits = HOSTED_LIMITS if profile == "hosted" else Limits()
        store = str(settings.get("AELAB_STORE") or "").strip()
        store = "" if store.lower() in ("none", "off", "memory") else store or str(cache_dir() / "store")
        keep = {"max_age_s": (number("AELAB_STORE_MAX_AGE_DAYS", float, 0.001) or 30) * 86400.0,
                "max_runs": number("AELAB_STORE_MAX_RUNS", int, 1) or 1000,
                "max_bytes": int((number("AELAB_STORE_MAX_MB", float, 1) or 2048) * 1024 ** 2)}
        return cls(profile=profile, limits=limits, backend=backend, ray_address=address or "local", store=store,
                   store_retention=Retention(**keep), **values)
