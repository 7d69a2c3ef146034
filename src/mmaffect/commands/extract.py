"""``mmaffect extract MANIFEST --output CACHE``: raw media -> resumable feature cache.

MANIFEST is read by the one manifest reader (``manifest:`` datasets, :mod:`mmaffect.data.manifest`):
CSV or JSONL, one row per utterance, columns mapped with ``--columns canonical=column,...``:
``path`` (the media file, relative to the manifest's folder), ``text`` (the transcript; empty or absent:
transcribed with ASR), ``id`` (default: the row number), ``start``/``end`` (a window in seconds, to cut
utterances out of one long recording), and the targets and structure (``label``, ``score``, ``labels``,
``speaker``, ``dialogue_id``, ``utt_index``, ``split``, ``fold``), kept in each item's metadata for the
``cache:CACHE`` dataset reader. Media paths must stay inside the manifest's folder, or inside
``--media-root DIR`` when the media live elsewhere (relative paths are then taken from DIR). Rows
with a problem (a missing or empty file, a path escaping that folder, a duplicate id, a malformed
line, ...) are skipped, printed with their row number and listed in report.csv (status skipped);
the job goes on, and ``--strict`` exits 1. IEMOCAP clips::

    mmaffect extract /data/iemocap_clips/manifest.csv --output cache/iemocap \\
        --columns path=clip_file,text=transcript,id=utterance_id

ASR: rows without a transcript are transcribed with the packaged Whisper tiny.en, which knows only
English -- on other languages it writes fluent English nonsense (flagged as low-confidence per item
and in the summary). For an audio-only corpus (no use for transcripts) pass ``--asr never``; for
another language, a multilingual ``--asr-model``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mmaffect.errors import DataError

__all__ = ["add_parser", "run", "items_from_manifest"]

_DESCRIPTION = """\
Extract transcripts and audio/visual features of raw media into a resumable feature cache.

MANIFEST is a CSV or JSONL file, one row per utterance. Columns (rename with --columns):
  path        the media file, relative to the manifest's folder (or to --media-root DIR)
  text        the transcript; empty or absent: transcribed with ASR
  id          the utterance id (default: the row number)
  start, end  a window in seconds, to cut utterances out of one long recording
  label, score, labels, speaker, dialogue_id, utt_index, split, fold
              targets and structure, kept for training on the cache (--dataset cache:CACHE)

Rows with a problem (missing or empty file, a path outside the folder, a duplicate id, a malformed
line) are skipped and listed in CACHE/report.csv; the job goes on, and --strict exits 1.
Re-running the same command resumes; finished items are not extracted again.

ASR: the packaged Whisper tiny.en knows only English; on other languages it writes fluent English
nonsense (flagged as low-confidence). For audio-only corpora pass --asr never.

Example (the IEMOCAP clips):
  mmaffect extract DATA/iemocap_clips/manifest.csv --output cache/iemocap \\
      --columns path=clip_file,text=transcript,id=utterance_id
"""


def items_from_manifest(argument: str, columns: str | dict[str, str] | None = None, encoding: str = "utf-8",
                        media_root: str | Path | None = None) -> tuple[list, list]:
    """The media rows of a manifest as :class:`~mmaffect.extraction.pipeline.ExtractItem` s, read by
    the one manifest reader (:mod:`mmaffect.data.manifest`), plus the rows left out.

    Rows are validated as for prediction (targets may be missing): a row with a problem (missing or
    escaping path, malformed cell, duplicate id, ...) is skipped and returned as a
    :class:`~mmaffect.extraction.pipeline.SkippedRow` (``str()`` gives its ``FILE: row N: problem``
    line), so a batch job reports it and goes on. Rows without a media path have nothing to extract.
    Targets and structure go into each item's metadata, which ``cache:DIR`` reads back.
    ``media_root``: the folder media paths are relative to and must stay inside (default: the
    manifest's folder).
    """
    from mmaffect.data.manifest import read_manifest
    from mmaffect.extraction.pipeline import ExtractItem, SkippedRow

    extra = {}
    if media_root is not None:
        root = Path(media_root).expanduser()
        if not root.is_dir():
            raise DataError(root, "--media-root must be an existing folder")
        extra["media_root"] = root.resolve()
    manifest = read_manifest(argument, columns, encoding, purpose="predict", **extra)
    if manifest.file_problems:
        raise DataError(None, "\n".join(manifest.file_problems))
    items, skipped = [], []
    for row in manifest.rows:
        problems = row.all_problems()
        if problems:
            skipped.append(SkippedRow(id=row.id, row=row.row, path=row.media, reason="; ".join(problems),
                                      where=row.where))
            continue
        if row.path is None:
            continue
        meta = {"label": row.label, "score": row.score, "labels": row.tags, "speaker": row.speaker,
                "dialogue_id": row.dialogue_id, "utt_index": row.utt_index, "split": row.split,
                "fold": row.fold, "row": row.row}
        items.append(ExtractItem(id=row.id, path=row.path, text=row.text or None, start=row.start, end=row.end,
                                 meta={k: v for k, v in meta.items() if v is not None}))
    return items, skipped


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``extract`` sub-command to an ``argparse`` sub-parsers object."""
    p = subparsers.add_parser(
        "extract", help="extract audio/visual features and transcripts of raw media into a resumable cache",
        description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("manifest", help="CSV/JSONL manifest with a path column (relative to it); see manifest:")
    p.add_argument("--output", required=True, help="cache folder (re-run the same command to resume)")
    p.add_argument("--media-root", metavar="DIR",
                   help="folder the manifest's media paths are relative to and must stay inside "
                        "(default: the manifest's folder)")
    p.add_argument("--fps", type=float, default=2.0, help="video frames sampled per second (default 2)")
    p.add_argument("--workers", type=int, help="worker processes (default 1: in this process); with --ray, Ray "
                                               "workers (default: one per CPU of the Ray cluster)")
    p.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                   help="run the items as Ray tasks: on a local Ray (no ADDRESS) or on the cluster at ADDRESS "
                        "(media and cache folder must be reachable under the same paths on every node)")
    p.add_argument("--egemaps", action="store_true",
                   help="also openSMILE eGeMAPS functionals (audEERING licence: non-commercial use only)")
    p.add_argument("--columns", help="manifest column mapping, e.g. path=clip_file,text=transcript,id=utterance_id")
    p.add_argument("--encoding", default="utf-8", help="manifest text encoding (e.g. cp1252, latin-1)")
    p.add_argument("--asr", choices=["auto", "always", "never"], default="auto",
                   help="auto: transcribe rows without text; always: also rows with text (word times); never "
                        "(audio-only corpora, or speech the ASR model's language does not cover)")
    p.add_argument("--asr-model", help="faster-whisper model (default: the packaged Whisper tiny.en, English only)")
    p.add_argument("--max-side", type=int, default=640, help="downscale frames to this longest side")
    p.add_argument("--audio-encoders", metavar="NAME,...", default="",
                   help="extra frame-level audio features: logmel (64 log-mel bands, 10 ms), whisper (the "
                        "packaged Whisper tiny.en encoder, 384-d, 20 ms); e.g. logmel,whisper")
    p.add_argument("--silence-db", type=float, default=-50.0,
                   help="an item whose loudest 25 ms frame is below this dBFS counts as silent (default -50; "
                        "lower it for quietly recorded speech)")
    p.add_argument("--whisper-window", choices=["full", "trim"], default="full",
                   help="whisper encoder input: full 30 s windows as trained (default) or trimmed to each "
                        "clip (~8x faster on short clips)")
    p.add_argument("--face-backend", choices=["tflite", "mediapipe"], default="tflite",
                   help="tflite (default): mediapipe's face models vendored in mmaffect; mediapipe: the mediapipe "
                        "package (installed apart, see README), as caches made before 2026-12-02 used")
    p.add_argument("--retry-failed", action="store_true", help="re-try items that failed before")
    p.add_argument("--strict", action="store_true",
                   help="exit with status 1 if any item failed or any manifest row was skipped")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``extract``; returns 0 when the job finished (failed items and skipped rows are in
    report.csv), 1 with ``--strict`` when some item failed or some manifest row was skipped.

    The output folder is checked first (an existing file, no write permission), before the manifest
    is read or anything is decoded. The global ``--threads`` sets the threads of each model (face
    analysis, ASR) in each worker.
    """
    from mmaffect.extraction.pipeline import ExtractConfig, extract
    from mmaffect.extras import require_face_backend
    from mmaffect.io import check_output_dir

    output = check_output_dir(args.output, "cache folder")
    encoders = tuple(e.strip() for e in (getattr(args, "audio_encoders", "") or "").split(",") if e.strip())
    config = ExtractConfig(fps=args.fps, egemaps=args.egemaps, asr=args.asr, asr_model=args.asr_model,
                           max_side=args.max_side, audio_encoders=encoders,
                           whisper_window=getattr(args, "whisper_window", "full"),
                           silence_db=getattr(args, "silence_db", -50.0),
                           face_backend=getattr(args, "face_backend", "tflite"))
    require_face_backend(config, "mmaffect extract")
    items, skipped = items_from_manifest(args.manifest, args.columns, args.encoding,
                                         media_root=getattr(args, "media_root", None))
    for line in skipped:
        print(f"skipped: {line}", file=sys.stderr)
    if not items:
        raise DataError(args.manifest, "the manifest has no usable media rows")
    ray = getattr(args, "ray", None)
    workers = args.workers if args.workers is not None else (0 if ray is not None else 1)
    report = extract(items, output, config, workers=workers, ray=ray, progress=not args.quiet,
                     retry_failed=args.retry_failed, threads=getattr(args, "threads", None) or 1, skipped=skipped)
    print(report.summary())
    for item_id, reason in list(report.failed.items())[:10]:
        print(f"  failed {item_id}: {reason}", file=sys.stderr)
    if report.n_failed > 10:
        print(f"  ... {report.n_failed - 10} more in {report.report_path}", file=sys.stderr)
    return 1 if args.strict and (report.n_failed or report.n_skipped) else 0
