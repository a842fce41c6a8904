"""The run service: every training on a server goes through one `RunRegistry`.

- `registry`: run ids, the caps and the FIFO queue, series of runs trained in turn (a study's), grace stops
  for unwatched runs, retention of ended ones.
- `job`: the thread backend, one `TrainingJob` per run (the registry starts it; pages never do).
- `process`: the process backend (the default), a spawned process per run.
- `cluster`: the Ray backend (AELAB_RAY_ADDRESS), a named Ray actor per run; Ray itself is optional.
  `directory`: its catalogue of runs, an actor that imports nothing heavy.
- `settings`: `RegistryConfig` from AELAB_* settings, and the hosted profile's `Limits` per visitor.
- `bench`: the backends measured side by side (`python -m aecore.runs.bench`).

Pages and labs hold a run's id and ask the registry for a `RunView`; they never hold the job itself. The names
below are imported when first used, so that `aecore.runs.directory` alone (in its Ray actor) pulls in no torch.
"""
import importlib

_WHERE = {"RayUnavailable": "cluster", "RunSpec": "job", "Snapshot": "job", "TrainingJob": "job",
          "RunRefused": "registry", "RunRegistry": "registry", "RunView": "registry", "HOSTED_LIMITS": "settings",
          "Limits": "settings", "RegistryConfig": "settings"}

__all__ = list(_WHERE)


def __getattr__(name):
    if name in _WHERE:
        return getattr(importlib.import_module(f"aecore.runs.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'aecore.runs' has no attribute {name!r}")
