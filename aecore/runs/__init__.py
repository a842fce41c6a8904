"""The run service: every training on a server goes through one `RunRegistry`.

- `registry`: run ids, the caps and the FIFO queue, series of runs trained in turn (a study's), grace stops
  for unwatched runs, retention of ended ones.
- `job`: the thread backend, one `TrainingJob` per run (the registry starts it; pages never do).
- `process`: the process backend (the default), a spawned process per run.
- `cluster`: the Ray backend (AELAB_RAY_ADDRESS), a named Ray actor per run; Ray itself is optional.
- `settings`: `RegistryConfig` from AELAB_* settings, and the hosted profile's `Limits` per visitor.

Pages and labs hold a run's id and ask the registry for a `RunView`; they never hold the job itself.
"""
from aecore.runs.cluster import RayUnavailable
from aecore.runs.job import RunSpec, Snapshot, TrainingJob
from aecore.runs.registry import RunRefused, RunRegistry, RunView
from aecore.runs.settings import HOSTED_LIMITS, Limits, RegistryConfig

__all__ = ["RayUnavailable", "RunSpec", "Snapshot", "TrainingJob", "RunRefused", "RunRegistry", "RunView", "HOSTED_LIMITS",
           "Limits", "RegistryConfig"]
