"""Resumable, parallel raw-media feature extraction into one cache folder.

:func:`extract` turns a list of :class:`ExtractItem` (a media file, optionally a time window, a
transcript and metadata such as the label) into a feature cache (see :mod:`mmaffect.extraction`
for the layout). Per item it runs

1. :func:`mmaffect.features.media.decode` (16 kHz mono audio, RGB frames sampled at ``fps``),
2. the transcript: the given text, else Whisper ASR with word times (``ExtractConfig.asr``),
3. ``audio_lld`` + ``audio_functionals`` (+ openSMILE eGeMAPS when ``egemaps=True``),
4. :class:`mmaffect.features.face.FaceAnalyzer` on every sampled frame (detection, score, box,
   478-point mesh, FER expression probabilities, aligned 48x48 grayscale crops), and the 16-value
   geometric descriptor of :func:`mmaffect.extraction.summaries.face_geometry`.

Resumability: each item's arrays and its JSON record are written in *one* LMDB transaction by the
parent process (the only writer), so a job killed at any point (even ``kill -9``) keeps every item
committed before, and the re-run extracts only what is missing. An item counts as done when its id
is in the cache with the same source content (sha256), window and given text. Extraction is
deterministic (stateless models, one thread per model, a fixed ASR seed), so an interrupted and
resumed job gives the same arrays, bit for bit, as an uninterrupted one.

Failures and warnings: see :data:`POLICY` -- per-item problems never stop the job.

Workers: ``workers=1`` runs in this process (models stay loaded between calls; see
:func:`release_models`); ``workers >= 2`` spawns that many processes, each loading the models once
with one thread per model, pinned to one core each when there are at least as many workers as cores
(FFmpeg and mediapipe otherwise start one thread per core in every worker). A worker that crashes
(segfault, OOM kill) fails only the item it was on, as a retryable failure. Scripts calling
``extract(..., workers>=2)`` need an ``if __name__ == "__main__":`` guard (spawned workers re-import
the main module).
``ray=""`` (or a cluster address) runs the items as Ray tasks instead
(:mod:`~mmaffect.extraction.ray_workers`); this process still commits every result.

Skipping: an id whose record has the same source sha256, window (start/end) and given text is not
extracted again; when only its ``meta`` changed, the record is rewritten without re-extraction. The
sha256 of a cached file is recomputed only when its size or mtime changed (the rsync quick check).
A cached item whose source file has disappeared keeps its features (with a warning in the report).

Modules: this one is the job (lock, plan, commit, report); :mod:`~mmaffect.extraction.config` the
items, settings and cache layout, :mod:`~mmaffect.extraction.stages` one item through the extractors,
:mod:`~mmaffect.extraction.workers` the in-process extractor and the worker pool,
:mod:`~mmaffect.extraction.report` the report. Every public name is importable from here.

Limits: :func:`~mmaffect.features.media.decode` holds all sampled frames of an item in memory
(640x480 RGB at 2 fps is ~1.8 MB per second of video), so give long recordings as one item per
utterance with ``start``/``end``, not as one hour-long item.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from mmaffect.errors import ConfigError, DataError, OutputError
from mmaffect.extraction.config import (
    _MAX_ID_BYTES,
    ARRAY_SCHEMA,
    CACHE_FORMAT,
    CACHE_FORMAT_VERSION,
    LOCK_FILE,
    META_FILE,
    POLICY,
    RECORD_KEY,
    REPORT_COLUMNS,
    REPORT_FILE,
    STORE_DIR,
    ExtractConfig,
    ExtractItem,
    SkippedRow,
    _meta_for,
    asr_mode,
    asr_plan,
    config_hash,
    package_versions,
)
from mmaffect.extraction.report import (
    UNRELIABLE_ASR_MEAN,
    UNRELIABLE_NO_SPEECH_MEAN,
    ExtractionReport,
    _row,
    _skipped_row,
    _write_report,
)
from mmaffect.extraction.stages import _encode_record, _item_key, _Result, _sha256, decode_record
from mmaffect.extraction.workers import _local_extractor, _run_pool, release_models
from mmaffect.io import check_output_dir, write_json

__all__ = ["ExtractItem", "SkippedRow", "ExtractConfig", "ExtractionReport", "extract", "release_models", "POLICY",
           "CACHE_FORMAT", "CACHE_FORMAT_VERSION", "STORE_DIR", "META_FILE", "REPORT_FILE", "REPORT_COLUMNS",
           "LOCK_FILE", "RECORD_KEY", "ARRAY_SCHEMA", "UNRELIABLE_ASR_MEAN", "UNRELIABLE_NO_SPEECH_MEAN",
           "config_hash", "package_versions", "decode_record", "asr_plan", "asr_mode"]


logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------- the job
class _JobLock:
    """An exclusive lock on the cache folder, so two jobs never write it at once (freed on any exit)."""

    def __init__(self, folder: Path):
        self.path = folder / LOCK_FILE
        self.fh = None

    def __enter__(self) -> _JobLock:
        import fcntl

        try:
            self.fh = open(self.path, "a+")
        except OSError as exc:
            raise OutputError(self.path, f"cannot create the job lock ({exc.strerror or exc})") from exc
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            self.fh.close()
            raise DataError(self.path.parent, "another extraction job is writing this cache right now") from exc
        return self

    def __exit__(self, *exc) -> None:
        import fcntl

        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()


def _prepare_output(output: Path, config: ExtractConfig) -> dict:
    """Create the cache folder with its meta.json, or check that an existing one used the same config."""
    meta_path = output / META_FILE
    wanted = _meta_for(config)
    if meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as exc:
            raise DataError(meta_path, f"unreadable cache metadata ({exc})") from exc
        if meta.get("format") != CACHE_FORMAT:
            raise DataError(meta_path, f"not an mmaffect feature cache (format {meta.get('format')!r})")
        old, new = meta.get("config", {}), wanted["config"]
        diff = [k for k in sorted(set(old) | set(new)) if old.get(k, "<unset>") != new.get(k, "<unset>")]
        if diff:
            was = ", ".join(f"{k}={old.get(k, '<unset>')!r}" for k in diff)
            now = ", ".join(f"{k}={new.get(k, '<unset>')!r}" for k in diff)
            raise ConfigError(f"{output}: this cache was extracted with {was}; this run asks for {now}. "
                              "Extract into another --output folder, or re-run with the cache's settings.")
        changed = {k: (v, wanted["versions"].get(k)) for k, v in meta.get("versions", {}).items()
                   if wanted["versions"].get(k) != v and k in wanted["versions"]}
        if changed:
            warnings.warn(f"{output}: cache built with " + ", ".join(f"{k} {a}" for k, (a, _) in changed.items())
                          + "; now " + ", ".join(f"{k} {b}" for k, (_, b) in changed.items())
                          + ": new items may differ slightly from cached ones", UserWarning, stacklevel=3)
        return meta
    if (output / STORE_DIR).exists():
        raise DataError(output, f"feature store without {META_FILE}: not a complete cache; use a new folder")
    write_json(meta_path, wanted)
    return wanted


def _validate_items(items: Sequence[ExtractItem]) -> None:
    seen: set[str] = set()
    dupes: list[str] = []
    for item in items:
        if not isinstance(item, ExtractItem):
            raise TypeError(f"expected ExtractItem, got {type(item).__name__}")
        if not item.id or len(item.id.encode("utf-8")) > _MAX_ID_BYTES:
            raise DataError(item.path, f"item id must be 1..{_MAX_ID_BYTES} bytes, got {item.id!r}")
        if item.id in seen:
            dupes.append(item.id)
        seen.add(item.id)
        try:
            json.dumps(item.meta, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise DataError(item.path, f"item {item.id!r}: meta is not JSON-serialisable ({exc})") from exc
    if dupes:
        raise DataError(None, f"{len(dupes)} duplicate item ids: {', '.join(sorted(set(dupes))[:10])}")


def _plan(items: Sequence[ExtractItem], store, config: ExtractConfig, retry_failed: bool):
    """Split items into those to extract and those already cached (+ records whose meta changed)."""
    from concurrent.futures import ThreadPoolExecutor

    records: dict[str, dict] = {}
    ids = [i.id for i in items]
    for start in range(0, len(ids), 256):  # in chunks: only the records stay in memory
        chunk = ids[start:start + 256]
        for key, entry in zip(chunk, store.get_many(chunk), strict=True):
            if entry is not None and RECORD_KEY in entry:
                records[key] = decode_record(entry[RECORD_KEY])

    def current_sha(item: ExtractItem) -> str | None:
        old = records[item.id].get("source") or {}
        try:
            st = item.path.stat()
        except OSError:
            return None
        if not item.path.is_file():
            return None
        if old.get("sha256") and old.get("size") == st.st_size and old.get("mtime_ns") == st.st_mtime_ns:
            return old["sha256"]  # quick check (size + mtime), as rsync/make do: no re-hash
        try:
            return _sha256(item.path)
        except OSError:
            return None

    known = [i for i in items if i.id in records]
    with ThreadPoolExecutor(max_workers=2) as pool:  # hashlib releases the GIL
        shas = dict(zip([i.id for i in known], pool.map(current_sha, known), strict=True))
    todo, cached, updates = [], {}, {}
    for item in items:
        rec = records.get(item.id)
        if rec is None:
            todo.append(item)
            continue
        sha = shas[item.id]
        old_key = rec.get("key") or {}
        if sha is None and rec["status"] == "ok" and old_key.get("sha256"):
            rec = dict(rec, warnings=[*rec.get("warnings", []), "source file not found now; cached features kept"])
            cached[item.id] = (rec, "cached")
            continue
        same = old_key == _item_key(item, sha, config)
        retry = rec["status"] == "failed" and (rec.get("retryable") or retry_failed)
        if not same or retry:
            todo.append(item)
        elif rec.get("meta") != item.meta:
            new = dict(rec, meta=item.meta)
            arrays = dict(store.get(item.id))
            arrays[RECORD_KEY] = _encode_record(new)
            updates[item.id] = arrays
            cached[item.id] = (new, "updated")
        else:
            cached[item.id] = (rec, "cached")
    return todo, cached, updates


def extract(
    items: Iterable[ExtractItem],
    output: str | Path,
    config: ExtractConfig = ExtractConfig(),  # noqa: B008 -- frozen, so a shared default is safe
    workers: int = 1,
    progress: bool = True,
    *,
    retry_failed: bool = False,
    threads: int = 1,
    pin_workers: bool = True,
    on_result: Callable[[str, dict], None] | None = None,
    skipped: Sequence[SkippedRow] = (),
    ray: str | None = None,
) -> ExtractionReport:
    """Extract features of ``items`` into the cache folder ``output``; resumable and parallel.

    Args:
        items: the utterances (unique ids).
        output: cache folder (created; an existing cache must have the same ``config``).
        config: extraction settings, all recorded in ``meta.json``.
        workers: 1 = in this process; N >= 2 = N spawned worker processes (each loads the models
            once, ``threads`` threads per model), the parent being the only writer.
        progress: a tqdm progress bar with ETA on stderr.
        retry_failed: also re-try items that failed before (by default only retryable failures --
            internal errors and worker crashes -- are re-tried; bad input files fail the same way).
        threads: threads per model per worker (mediapipe's own graphs are not limited by this).
        pin_workers: with at least as many workers as cores, pin each worker to one core, so
            FFmpeg's and mediapipe's thread pools do not oversubscribe the machine.
        on_result: called as ``on_result(id, record)`` after each item is committed.
        skipped: manifest rows left out before extraction; listed in the report (status ``skipped``)
            so ``report.csv`` accounts for every row of the manifest.
        ray: run the items as Ray tasks (:mod:`~mmaffect.extraction.ray_workers`): ``""`` on a local Ray
            with ``workers`` CPUs, else the address of a running cluster; ``workers`` actors (0: one
            per CPU of the Ray cluster). This process still writes the cache, so the result is the same.

    Returns:
        An :class:`ExtractionReport`; ``report.csv`` in ``output`` holds the same rows.

    Raises:
        OutputError: ``output`` cannot be a cache folder (a file, no write permission), checked before
            any work; or the store cannot be written (disk full), naming it.
    """
    from mmaffect.store import ArrayStore

    started = time.perf_counter()
    items = list(items)
    _validate_items(items)
    if workers < (0 if ray is not None else 1):
        raise ConfigError(f"workers must be >= 1, got {workers}")
    output = check_output_dir(Path(output), "cache folder")
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(output, f"cannot create the cache folder ({exc.strerror or exc})") from exc
    report = ExtractionReport(output=output, rows=[], workers=workers, asr_mode=asr_mode(config))
    with _JobLock(output):
        _prepare_output(output, config)
        with ArrayStore(output / STORE_DIR) as store:
            todo, cached, updates = _plan(items, store, config, retry_failed)
            if updates:
                store.put_many(updates)
            rows = {i.id: _row(i, cached[i.id][0], cached[i.id][1]) if i.id in cached else _row(i, None, "pending")
                    for i in items}
            report.n_cached = len(cached)
            by_id = {i.id: i for i in items}
            bar = None
            if progress:
                from tqdm import tqdm

                logger.info("extract: %d items, %d already cached, %d to extract with %d worker(s) into %s; %s",
                            len(items), len(cached), len(todo), workers, output, asr_plan(config, todo))
                if todo:
                    bar = tqdm(total=len(todo), desc="extract", unit="item", file=sys.stderr, dynamic_ncols=True)

            def commit(result: _Result) -> None:
                if result.fatal:
                    raise ConfigError(f"cannot load the extraction models in a worker: {result.fatal}")
                store.put_many({result.id: result.arrays})  # arrays + record: one transaction
                rows[result.id] = _row(by_id[result.id], result.record, "extracted")
                report.n_extracted += 1
                report.media_seconds += result.media_seconds
                for stage, sec in result.timings.items():
                    report.stage_seconds[stage] = report.stage_seconds.get(stage, 0.0) + sec
                if bar is not None:
                    bar.update(1)
                    n_failed = sum(r["status"] == "failed" for r in rows.values())
                    if n_failed:
                        bar.set_postfix(failed=n_failed, refresh=False)
                if on_result is not None:
                    on_result(result.id, result.record)

            def finish() -> None:
                if bar is not None:
                    bar.close()
                report.rows = [rows[i.id] for i in items] + [_skipped_row(s) for s in skipped]
                report.seconds = time.perf_counter() - started
                _write_report(output / REPORT_FILE, report.rows)

            try:
                if todo:
                    if ray is not None:
                        from mmaffect.extraction.ray_workers import run_ray

                        report.workers = run_ray(todo, config, workers, threads, commit, address=ray or None)
                    elif workers == 1:
                        ext = _local_extractor(config, threads)
                        for item in todo:
                            commit(ext.process(item))
                    else:
                        _run_pool(todo, config, workers, threads, commit, pin=pin_workers)
            except BaseException:
                try:  # keep the report of what was committed; the error that stopped the job comes first
                    finish()
                except OutputError as exc:
                    logger.warning("%s", exc)
                raise
            finish()
    if progress:
        logger.info("extract: %s", report.summary())
    return report
