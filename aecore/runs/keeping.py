"""The registry's side of the run store (aecore.runs.store): what it writes when, and a stored run as a job again.

`Keeper` wraps the server's `Store`: every write goes through `write`, which never lets a store problem (a full
disk, a read-only folder, a database that went away) reach a training; the problem is kept (`problem`) for the
pages to show, and cleared by the next write that succeeds. `restored` turns a stored run into an ended
`TrainingJob` that shows what the run left: its records, reconstructions and model (an interrupted run: as of
its last whole epoch).
"""
from __future__ import annotations

import logging
import threading

from aecore.engine import checkpoint, trainstate
from aecore.engine.checkpoint import CheckpointError
from aecore.engine.train import RunSpec
from aecore.runs.job import TrainingJob, with_changes
from aecore.runs.queue import RunRefused
from aecore.runs.store import Store, StoredRun, StoreError

log = logging.getLogger(__name__)


class Keeper:
    """The store of one registry, or none (`store` None: runs live in memory only; `problem` says why when the
    store could not be opened)."""

    def __init__(self, location: str, retention, clock=None):
        self.store: Store | None = None
        self.problem: str | None = None
        self.hooks: list = []        # hook(run_id, job) after each training's end is written (a class board's)
        self._lock = threading.Lock()
        if location:
            try:
                self.store = Store(location, retention, **({"clock": clock} if clock else {}))
                self.store.register()
            except StoreError as e:
                self.store, self.problem = None, str(e)
                log.warning("run store not used: %s", e)

    def write(self, method: str, *args, **kwargs):
        """Call the store's `method`; a StoreError becomes `problem` (and a log line) instead of an exception."""
        if self.store is None:
            return None
        try:
            out = getattr(self.store, method)(*args, **kwargs)
        except StoreError as e:
            with self._lock:
                if self.problem != str(e):
                    log.warning("run store: %s", e)
                self.problem = str(e)
            return None
        if self.problem is not None:
            with self._lock:
                self.problem = None
        return out

    def read(self, method: str, *args):
        """As `write`, for reads: None (or []) when the store cannot answer."""
        return self.write(method, *args)

    def resumable(self, run_id: str, backend_resumes: bool) -> tuple[StoredRun, bytes]:
        """The stored run and the training state to resume it from; RunRefused says why it cannot be."""
        stored = self.read("get", run_id)
        if stored is None or stored.state != "interrupted":
            raise RunRefused("only an interrupted run can be resumed" + (f"; this one is {stored.state}" if stored
                                                                        else "; this server's store does not have it"))
        if stored.series is not None:
            raise RunRefused("a study's runs are not resumed one by one: start the study again from its page")
        if not backend_resumes:
            raise RunRefused("runs on a Ray cluster start afresh; start this one again")
        state = self.read("blob", stored.state_blob)
        if state is None:
            raise RunRefused(f"{stored.name} was interrupted before its first epoch ended: there is nothing to go "
                             f"on from, start it again")
        return stored, state

    def epoch_keeper(self, run_id: str):
        """What a job calls after each epoch: keep(epoch, training state bytes, history)."""
        return lambda epoch, state, history: self.write("save_epoch", run_id, epoch, state, history)

    def ended(self, run_id: str, job: TrainingJob, stop_reason: str | None, interrupted: bool) -> None:
        """Write how a run ended: its model and timeline; or, a run stopped because the server shuts down
        (`interrupted`), that a restarted server can resume it from its last epoch."""
        if self.store is None or not isinstance(job.spec, RunSpec):
            return
        snap = job.snapshot()
        if interrupted and snap.state == "stopped":
            self.write("finish", run_id, "interrupted", stop_reason=stop_reason)
            self._after(run_id, job)
            return
        blob = job.checkpoint_bytes
        if blob is None and job.model is not None and job.meta is not None:    # a diverged run's last good weights
            blob = checkpoint.to_bytes(job.model, job.meta)
        timeline = trainstate.timeline_bytes(trainstate.records_of(snap.records), snap.originals, list(snap.timeline))
        epochs = [m.epoch for m in snap.records if m.epoch_end]
        self.write("finish", run_id, snap.state, error=snap.error, stop_reason=stop_reason, result=snap.result,
                   model=blob, timeline=timeline, history=(snap.result or {}).get("history"),
                   epochs_done=max(epochs, default=0))
        self._after(run_id, job)

    def _after(self, run_id: str, job: TrainingJob) -> None:
        for hook in self.hooks:
            try:
                hook(run_id, job)
            except Exception:            # a hook's failure is logged; it never reaches the training
                log.exception("after the end of run %s", run_id)

    def close(self) -> None:
        if self.store is not None:
            self.write("leave")
            self.store.close()


def restored(store: Store, run: StoredRun) -> TrainingJob:
    """An ended job that shows a stored run: records, reconstructions, model. A piece that cannot be read leaves
    the run shown as failed, with the reason."""
    spec, error, model, meta, blob = run.spec, run.error, None, None, None
    records, frames, originals = [], [], None
    try:
        if run.state == "interrupted":
            raw = store.blob(run.state_blob)
            if raw is not None:
                saved = trainstate.load(raw, f"the stored state of {run.name}")
                model, records, frames, originals = saved.model.eval(), saved.records, saved.frames, saved.originals
                meta = spec.meta("cpu", interrupted_at_epoch=saved.state.epoch)
        else:
            raw = store.blob(run.timeline_blob)
            if raw is not None:
                records, originals, frames = trainstate.load_timeline(raw, f"the stored timeline of {run.name}")
            blob = store.blob(run.model_blob)
            if blob is not None:
                model, meta = checkpoint.load(blob)
    except (CheckpointError, StoreError) as e:
        error, blob = f"this run's stored files cannot be read: {e}", None
        return TrainingJob.ended_as(spec, "failed", trainstate.metrics_of(records), frames,
                                    originals if originals is not None else _no_digits(), error=error)
    records = trainstate.metrics_of(records)
    spec = with_changes(spec, [c for r in records for c in r.changes])     # made while it trained
    return TrainingJob.ended_as(spec, run.state, records, frames,
                                originals if originals is not None else _no_digits(), model=model, meta=meta,
                                checkpoint_bytes=blob, result=run.result, error=error, stop_reason=run.stop_reason)


def _no_digits():
    import numpy as np
    return np.zeros((0, 28, 28))
