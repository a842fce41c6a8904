"""The run service: every training on a server goes through one `RunRegistry`.

- `registry`: run ids, the caps and the FIFO queue, series of runs trained in turn (a study's), grace stops
  for unwatched runs, retention of ended ones. `queue`: its records of runs, and who starts next, where a
  queued run stands and when it should start, which ended runs go (plain functions the registry calls).
- `backend`: what the registry asks of a backend (a run's job; runs other servers started), and `LocalBackend`.
- `job`: the thread backend, one `TrainingJob` per run (the registry starts it; pages never do).
- `process`: the process backend (the default), a spawned process per run.
- `task`: runs that are not one `fit` (`TaskSpec`: a lab's experiment named by its import path, a generator of
  progress records), trained through the same registry, cap, queue and local backends.
- `cluster`: the Ray backend (AELAB_RAY_ADDRESS), a named Ray actor per run, and the connection to Ray; Ray
  itself is optional. `relay`: the server's side of it, the job that mirrors a run's actor, and `RayBackend`.
  `directory`: its catalogue of runs, an actor that imports nothing heavy.
- `settings`: `RegistryConfig` from AELAB_* settings, and the hosted profile's `Limits` per visitor.
- `bench`: the backends measured side by side (`python -m aecore.runs.bench`).

Pages and labs hold a run's id and ask the registry for a `RunView`; they never hold the job itself. The names
below (`RunSpec` is the engine's, re-exported) are imported when first used, so that `aecore.runs.directory` alone (in its Ray actor) pulls in no torch.
"""
import importlib

_WHERE = {"RayUnavailable": "aecore.runs.cluster", "RunSpec": "aecore.engine.train", "Snapshot": "aecore.runs.job",
          "TrainingJob": "aecore.runs.job", "RunRefused": "aecore.runs.registry", "RunRegistry": "aecore.runs.registry",
          "RunView": "aecore.runs.registry", "HOSTED_LIMITS": "aecore.runs.settings", "Limits": "aecore.runs.settings",
          "RegistryConfig": "aecore.runs.settings",
          "TaskError": "aecore.runs.task", "TaskSpec": "aecore.runs.task"}

__all__ = list(_WHERE)


def __getattr__(name):
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'aecore.runs' has no attribute {name!r}")
