"""Extraction items as Ray tasks: the same extractor, the same writer, on a local Ray or a cluster.

Why Ray and not a bigger process pool: a corpus of a thousand hours outgrows one machine, and Ray is
an engine people already run on a laptop (``ray.init()``) and on a cluster (``ray.init(address=...)``).
Each Ray worker is an actor that loads the models once (:func:`~mmaffect.extraction.workers._worker_init`,
as a pool process does) and runs items as method calls; results come back to the job's process, which
stays the only writer of the cache (:func:`mmaffect.extraction.pipeline.extract` commits them), so the
cache format, resumability and the failure report are exactly those of a local run. On a cluster the
media files and the cache folder must be reachable from the nodes under the same paths (items carry
file paths, not bytes).

A worker that dies (segfault, OOM kill) fails only its item: the items it held are re-run one at a
time on a fresh actor, and one that kills its actor again is recorded as a retryable failure.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections import deque
from collections.abc import Callable

from mmaffect.errors import ConfigError
from mmaffect.extraction.config import ExtractConfig, ExtractItem
from mmaffect.extraction.stages import _crashed, _Result

log = logging.getLogger(__name__)


class _RayWorker:
    """One Ray actor: the extraction models of one process, loaded once."""

    def __init__(self, config: ExtractConfig, threads: int, core: int | None):
        from mmaffect.extraction.workers import _worker_init

        if core is not None and hasattr(os, "sched_setaffinity"):
            try:  # see workers._pin: FFmpeg/mediapipe size their thread pools from the visible cores
                os.sched_setaffinity(0, {core})
            except OSError:
                pass
        _worker_init(config, threads, os.getppid())

    def ping(self) -> str | None:
        from mmaffect.extraction.workers import _ping

        return _ping()

    def process(self, item: ExtractItem) -> _Result:
        from mmaffect.extraction.workers import _worker_process

        return _worker_process(item)


def start_ray(address: str | None, cpus: int | None) -> bool:
    """Connect to ``address``, or start a local Ray with ``cpus`` CPUs; True if this call started it."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False,
                 object_store_memory=300 * 1024 ** 2, _temp_dir=tempfile.mkdtemp(prefix="mmaffect_ray_"))
    return True


def run_ray(todo: list[ExtractItem], config: ExtractConfig, workers: int | None, threads: int,
            commit: Callable[[_Result], None], address: str | None = None) -> int:
    """Run ``todo`` on Ray actors (``workers``, default: the cluster's CPUs); ``commit`` gets each result.
    Returns the number of actors used."""
    import ray
    from ray.exceptions import RayActorError

    started = start_ray(address, workers)
    actors: list = []
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        n = max(1, min(workers or cpus, len(todo)))
        local_cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        pin = not address and len(local_cores) > 1 and n >= len(local_cores)
        remote = ray.remote(num_cpus=1, max_restarts=0, max_task_retries=0)(_RayWorker)

        def actor(i: int):
            handle = remote.remote(config, threads, local_cores[i % len(local_cores)] if pin else None)
            fatal = ray.get(handle.ping.remote())
            if fatal:
                raise ConfigError(f"cannot load the extraction models in a Ray worker: {fatal}")
            return handle

        actors.extend(actor(i) for i in range(n))
        log.info("extract: %d Ray worker(s)%s", n, f" on {address}" if address else " on a local Ray")
        queue, in_flight, lost = deque(todo), {}, []
        load = dict.fromkeys(range(n), 0)
        while queue or in_flight:
            for i in range(n):  # two items per actor: one running, one waiting
                while queue and load[i] < 2:
                    item = queue.popleft()
                    in_flight[actors[i].process.remote(item)] = (i, item)
                    load[i] += 1
            if not in_flight:
                break
            done, _ = ray.wait(list(in_flight), num_returns=1)
            i, item = in_flight.pop(done[0])
            load[i] -= 1
            try:
                commit(ray.get(done[0]))
            except RayActorError:
                lost.append(item)  # its actor died: so did everything else it held
                for ref, (j, other) in list(in_flight.items()):
                    if j == i:
                        lost.append(other)
                        del in_flight[ref]
                load[i] = 0
                actors[i] = actor(i)
        for item in lost:  # one at a time on a fresh actor, so a crash names its item
            solo = actor(0)
            try:
                result = ray.get(solo.process.remote(item))
            except RayActorError:
                result = _crashed(item, config)
            ray.kill(solo)
            commit(result)
        return n
    finally:
        for handle in actors:
            ray.kill(handle)
        if started:
            ray.shutdown()
