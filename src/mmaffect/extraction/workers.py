"""Where :class:`~mmaffect.extraction.stages._Extractor` runs: in this process (models kept loaded
between calls, :func:`release_models` frees them) or in a pool of spawned worker processes, each
loading the models once with ``threads`` threads per model and optionally pinned to one core. A
worker that dies fails only the item it was on (re-run alone to name it).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from mmaffect.errors import ConfigError
from mmaffect.extraction.config import ExtractConfig, ExtractItem
from mmaffect.extraction.stages import _crashed, _Extractor, _Result

__all__ = ["release_models"]



# worker-process state (spawned processes: one extractor each, models loaded once)
_WORKER: dict = {}


def _watch_parent(parent: int) -> None:
    """End this worker when the parent dies (kill -9): a spawned worker would otherwise wait forever."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(1)


def _pin(counter) -> None:
    """Pin this worker to one of the parent's cores (round robin). FFmpeg's decoder threads and the
    mediapipe/XNNPACK pools size themselves from the visible cores: without this, N workers on N cores
    each start N threads, and the oversubscription made 2 workers slower than 1."""
    if counter is None or not hasattr(os, "sched_setaffinity"):
        return
    cores = sorted(os.sched_getaffinity(0))
    with counter.get_lock():
        index = counter.value
        counter.value += 1
    try:
        os.sched_setaffinity(0, {cores[index % len(cores)]})
    except OSError:
        pass


def _worker_init(config: ExtractConfig, threads: int, parent: int, counter=None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops the pool
    _pin(counter)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = str(threads)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    try:
        import cv2

        cv2.setNumThreads(threads)
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(threads)
        ext = _Extractor(config, threads)
        ext.load()
        _WORKER["extractor"] = ext
    except Exception as exc:  # reported by the first task: the parent stops the job with this message
        _WORKER["error"] = f"{type(exc).__name__}: {exc}"


def _ping() -> str | None:
    """A worker's model-loading error, or None once it is ready."""
    return _WORKER.get("error")


def _worker_process(item: ExtractItem) -> _Result:
    if "error" in _WORKER:
        return _Result(item.id, {}, {}, {}, fatal=_WORKER["error"])
    return _WORKER["extractor"].process(item)


# in-process extractors (workers=1), kept across calls with the same settings: one per thread, because the
# mediapipe graphs crash when two threads run them at once (mmaffect serve --workers 2 under load)
_THREAD = threading.local()


def _local() -> dict:
    if not hasattr(_THREAD, "store"):
        _THREAD.store = {}
    return _THREAD.store


def _local_extractor(config: ExtractConfig, threads: int) -> _Extractor:
    key = (config, threads)
    store = _local()
    if store.get("key") != key:
        ext = _Extractor(config, threads)
        try:
            ext.load()
        except Exception as exc:
            raise ConfigError(f"cannot load the extraction models: {type(exc).__name__}: {exc}") from exc
        store.update(key=key, extractor=ext)
    return store["extractor"]


def release_models() -> None:
    """Free the models that ``extract(..., workers=1)`` keeps loaded in this thread between calls."""
    store = _local()
    ext = store.pop("extractor", None)
    store.clear()
    if ext is not None and ext._face is not None:
        ext._face.close()


def _stop_pool(pool: ProcessPoolExecutor) -> None:
    """Stop a pool now (Ctrl-C): cancel queued work and end the worker processes this job started."""
    procs = list(getattr(pool, "_processes", {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        if proc.is_alive():
            proc.terminate()


def _run_pool(todo: list[ExtractItem], config: ExtractConfig, workers: int, threads: int,
              commit: Callable[[_Result], None], pin: bool = True) -> None:
    """Run items on ``workers`` spawned processes; the caller commits results as they come.

    If a worker dies (segfault, OOM kill), the items in flight are re-run one by one in a fresh
    single-worker pool; one that kills its worker again is recorded as failed (retryable)."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = deque(todo)
    n_cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    counter = ctx.Value("i", 0) if pin and workers >= n_cores > 1 else None

    def new_pool(n: int) -> ProcessPoolExecutor:
        pool = ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=_worker_init,
                                   initargs=(config, threads, os.getpid(), counter))
        try:  # a worker that cannot even start must stop the job, not fail every item as a "crash"
            fatal = pool.submit(_ping).result()
        except BrokenProcessPool as exc:
            pool.shutdown(wait=True)
            raise ConfigError(
                "extraction worker processes could not start (see the traceback above). A script that calls "
                "extract() with workers > 1 must guard its entry point with `if __name__ == '__main__':`, "
                "because workers are spawned and re-import the main module") from exc
        except BaseException:
            _stop_pool(pool)
            raise
        if fatal:
            pool.shutdown(wait=True)
            raise ConfigError(f"cannot load the extraction models in a worker: {fatal}")
        return pool

    while queue:
        lost: list[ExtractItem] = []
        pool = new_pool(min(workers, len(queue)))
        in_flight: dict = {}
        try:
            while queue or in_flight:
                while queue and len(in_flight) < 2 * workers:  # keep every worker busy, little else queued
                    item = queue.popleft()
                    in_flight[pool.submit(_worker_process, item)] = item
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                broken = False
                for fut in done:
                    item = in_flight.pop(fut)
                    try:
                        result = fut.result()
                    except BrokenProcessPool:
                        broken = True
                        lost.append(item)
                        continue
                    commit(result)
                if broken:
                    lost.extend(in_flight.values())
                    in_flight.clear()
                    break
        except BaseException:
            _stop_pool(pool)
            raise
        pool.shutdown(wait=True)
        solo = None
        try:
            for item in lost:  # one at a time on one worker, so a crash names its item
                solo = solo or new_pool(1)
                try:
                    result = solo.submit(_worker_process, item).result()
                except BrokenProcessPool:
                    result = _crashed(item, config)
                    solo.shutdown(wait=True)
                    solo = None
                commit(result)
        except BaseException:
            if solo is not None:
                _stop_pool(solo)
            raise
        if solo is not None:
            solo.shutdown(wait=True)
