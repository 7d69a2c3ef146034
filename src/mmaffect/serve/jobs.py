"""Jobs: a bounded worker pool with a bounded queue, job state kept in memory, files cleaned up.

Each worker owns an :class:`~mmaffect.serve.engine.Engine` (its loaded models); a job takes a free
worker when one is idle and waits in the queue otherwise. When ``queue_size`` jobs are already
waiting, a new one is refused (the API answers 503) rather than piling up work nobody will wait for.

Job ids are random (``secrets.token_urlsafe``): knowing one is what lets a page reload find its job
again, and ids cannot be guessed. Uploaded files are stored under random names; a job's file is
deleted when the job ends, and the job itself (its result) is forgotten ``retention_seconds`` after
it ended. A sweeper thread does this even when nobody calls the API.
"""

from __future__ import annotations

import logging
import queue
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from mmaffect.errors import MMAffectError
from mmaffect.serve.engine import Engine

log = logging.getLogger(__name__)


class QueueFull(Exception):
    """More jobs are waiting than the server takes."""


@dataclass
class Job:
    id: str
    kind: str  # "media" or "text"
    name: str  # what the person sent (file name, or "transcript")
    path: Path | None = None  # the stored upload
    text: str | None = None
    status: str = "queued"  # queued -> running -> done | error
    stage: str = "waiting for a free worker"
    progress: float = 0.0
    result: dict | None = None
    error: str | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None

    def public(self, position: int | None) -> dict:
        """What ``GET /api/jobs/{id}`` shows."""
        now = self.finished or time.time()
        return {"id": self.id, "kind": self.kind, "name": self.name, "status": self.status, "stage": self.stage,
                "progress": round(self.progress, 3), "queue_position": position,
                "created": self.created, "started": self.started, "finished": self.finished,
                "elapsed": round(now - (self.started or self.created), 2), "error": self.error,
                "result": self.result}


class JobManager:
    def __init__(self, engines: list[Engine], storage: Path, queue_size: int, retention_seconds: float):
        self.storage = Path(storage)
        self.storage.mkdir(parents=True, exist_ok=True)
        self.queue_size = queue_size
        self.retention = retention_seconds
        self._free: queue.Queue[Engine] = queue.Queue()
        for engine in engines:
            self._free.put(engine)
        self._pool = ThreadPoolExecutor(max_workers=len(engines), thread_name_prefix="mmaffect-job")
        self._jobs: dict[str, Job] = {}
        self._waiting: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sweeper = threading.Thread(target=self._sweep_loop, name="mmaffect-sweeper", daemon=True)
        self._sweeper.start()

    # -- files
    def new_upload_path(self) -> Path:
        """A fresh random file name in the storage folder (the client's name is never used on disk)."""
        return self.storage / f"upload-{secrets.token_hex(16)}"

    # -- jobs
    def submit(self, kind: str, name: str, *, path: Path | None = None, text: str | None = None) -> Job:
        with self._lock:
            if len(self._waiting) >= self.queue_size + self._idle_workers():
                raise QueueFull(f"{len(self._waiting)} job(s) are already waiting; try again in a minute")
            job = Job(id=secrets.token_urlsafe(12), kind=kind, name=name, path=path, text=text)
            self._jobs[job.id] = job
            self._waiting.append(job.id)
        self._pool.submit(self._run, job)
        return job

    def _idle_workers(self) -> int:
        return self._free.qsize()

    def get(self, job_id: str) -> dict | None:
        self.sweep()
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return None
            position = self._waiting.index(job_id) + 1 if job_id in self._waiting else None
            return job.public(position)

    def _run(self, job: Job) -> None:
        engine = self._free.get()
        with self._lock:
            self._waiting.remove(job.id)
            job.status, job.started = "running", time.time()

        def progress(stage: str, fraction: float) -> None:
            job.stage, job.progress = stage, fraction

        progress("starting", 0.1)
        try:
            if job.kind == "media":
                job.result = engine.media(job.path, job.name, progress)
            else:
                job.result = engine.transcript(job.text, progress)
            job.status, job.stage, job.progress = "done", "done", 1.0
        except MMAffectError as exc:
            job.status, job.stage, job.error = "error", "failed", str(exc).replace(str(job.path), job.name)
        except Exception as exc:  # a worker must survive any one bad input
            log.exception("job %s failed", job.id)
            job.status, job.stage, job.error = "error", "failed", f"internal error: {type(exc).__name__}: {exc}"
        finally:
            job.finished = time.time()
            job.text = None
            self._delete(job)
            self._free.put(engine)

    # -- retention
    def _delete(self, job: Job) -> None:
        if job.path is not None:
            job.path.unlink(missing_ok=True)

    def sweep(self) -> None:
        """Forget jobs that ended more than the retention time ago; delete stray files as old."""
        cutoff = time.time() - self.retention
        with self._lock:
            for job_id in [j.id for j in self._jobs.values() if j.finished is not None and j.finished < cutoff]:
                self._delete(self._jobs.pop(job_id))
            in_use = {j.path for j in self._jobs.values() if j.path is not None}
        for path in self.storage.glob("upload-*"):
            try:
                if path not in in_use and path.stat().st_mtime < cutoff:
                    path.unlink(missing_ok=True)
            except FileNotFoundError:
                pass

    def _sweep_loop(self) -> None:
        interval = min(max(self.retention / 4, 0.5), 60.0)
        while not self._stop.wait(interval):
            try:
                self.sweep()
            except OSError:
                log.exception("cleaning %s failed", self.storage)

    def close(self) -> None:
        """Stop: finish the running jobs, drop the waiting ones and delete every stored upload."""
        self._stop.set()
        self._pool.shutdown(wait=True, cancel_futures=True)
        for path in self.storage.glob("upload-*"):
            path.unlink(missing_ok=True)
