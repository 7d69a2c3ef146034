"""Resumable raw-media feature extraction (``mmaffect extract``) and its cache.

Cache folder layout (one folder per extraction config; a different config is refused)::

    CACHE/
      meta.json     format, every ExtractConfig field (+ hash), extractor names, package versions,
                    feature names, array schema, failure/warning policy; written once, atomically
      store/        ArrayStore (LMDB data.mdb + lock.mdb): key = item id -> safetensors dict with all
                    arrays of the item AND its JSON record (uint8 array "record"), one transaction
      report.csv    id, row, path, status, reason, warnings, run, asr_logprob, asr_no_speech -- one row per
                    item and per skipped manifest row, rewritten atomically after every run
      .lock         flock held by the running job (a second job on the same folder is refused)

Modules: :mod:`~mmaffect.extraction.pipeline` (:func:`extract`), :mod:`~mmaffect.extraction.cache`
(:class:`FeatureCache`, :func:`cache_modalities`) and :mod:`~mmaffect.extraction.summaries`
(geometric face descriptor, utterance/step summaries). The ``cache:DIR`` dataset reader
(:func:`load_cache`) is :mod:`mmaffect.data.cache`. Names are imported lazily, so spawned workers
never import torch through this package.
"""

from __future__ import annotations

_EXPORTS = {
    "ExtractItem": "pipeline", "ExtractConfig": "pipeline", "ExtractionReport": "pipeline", "extract": "pipeline",
    "POLICY": "pipeline", "release_models": "pipeline", "SkippedRow": "pipeline",
    "FeatureCache": "cache", "cache_modalities": "cache", "manifest_modalities": "cache",
    "GEOMETRY_NAMES": "summaries", "face_geometry": "summaries",
    "load_cache": "mmaffect.data.cache",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        module = _EXPORTS[name]
        return getattr(importlib.import_module(module if "." in module else f"mmaffect.extraction.{module}"), name)
    raise AttributeError(f"module 'mmaffect.extraction' has no attribute {name!r}")
