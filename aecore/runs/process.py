"""The process backend: each run trains in a process of its own, so runs and the UI do not share one interpreter.

A thread backend's runs and every session's page scripts take turns on one interpreter lock: measured with 20
browser sessions and two runs on 2 cores, the server used 0.6 of its 2 cores and the runs together trained at
a third of one run's speed alone. Here `ProcessJob` is a `TrainingJob` whose worker thread only relays: it takes
a warm training process from the backend's `Pool` (`aecore.runs.pool`: torch imported, one per slot), sends it
the run with its data as shared files (`aecore.runs.shared`), and applies the events it sends back (records,
reconstructions, the checkpoint bytes at the end). Pause and stop are the process's shared events, read by `fit`
between two steps, as in the thread backend.
"""
from __future__ import annotations

from aecore.runs import shared
from aecore.runs.backend import LocalBackend
from aecore.runs.job import TrainingJob
from aecore.runs.pool import Pool


class ProcessJob(TrainingJob):
    """A TrainingJob that trains in a warm process of `pool`; same interface, same snapshots."""

    def __init__(self, *args, pool: Pool, **kwargs):
        super().__init__(*args, **kwargs)
        self.pool = pool

    def stop(self, reason: str | None = None) -> None:
        with self._lock:             # never between `_work` reading the control and handing it to the process
            self._control.stop()
        super().stop(reason)

    def _work(self) -> None:
        worker, healthy = None, False
        try:
            files = shared.publish(self.data)
            worker = self.pool.take()
            with self._lock:         # from here pause and stop reach the process's events
                worker.arm(self._control)
                self._control = worker.control
            worker.conn.send(("run", self.spec, files, self._probe.numpy(), self.threads, self.resume_from))
            while True:
                try:
                    kind, *payload = worker.conn.recv()
                except (EOFError, OSError):      # the pipe closes a moment before the process is reaped
                    worker.process.join(5)
                    self._receive("failed", f"the training process ended unexpectedly (exit code "
                                            f"{worker.process.exitcode})", None, None, None)
                    break
                if kind == "ready":          # the process has finished warming up (see pool.Worker.ready)
                    worker.ready = True
                    continue
                self._receive(kind, *payload)
                if kind in ("done", "failed"):
                    healthy = True
                    break
        except Exception as e:          # no process could be had, or a message could not be sent or read
            self._receive("failed", f"{type(e).__name__}: {e}", None, None, None)
        finally:
            if worker is not None:
                self.pool.give(worker, healthy)
            self._ended()


class ProcessBackend(LocalBackend):
    """Runs in warm training processes on this machine, `size` of them kept ready (one per slot)."""

    def __init__(self, size: int, threads: int):
        super().__init__(ProcessJob, threads)
        self.pool = Pool(size)

    def job(self, run_id, spec, data, series, on_end, keep=None, resume=None) -> TrainingJob:
        return ProcessJob(spec, data, threads=self.threads, on_end=on_end, keep=keep, resume=resume, pool=self.pool)

    def wait_ready(self, timeout_s: float) -> bool:
        return self.pool.wait_ready(timeout_s)

    def close(self) -> None:
        self.pool.close()
