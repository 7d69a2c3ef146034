"""``mmaffect extract MANIFEST --output CACHE``: raw media -> resumable feature cache.

The manifest is a CSV with one row per utterance. Column roles (``--columns role=column,...``):

* ``path`` (required): the media file, relative to the manifest's folder (or absolute);
* ``text``: the transcript (empty cell or no column: transcribed with ASR);
* ``id``: the item id (default: the spreadsheet row number, header = row 1, as ``manifest:`` does);
* ``start`` / ``end``: a window in seconds (to cut utterances out of one long recording);
* any other role renames a column into the item metadata, e.g. ``label=emotion``.

Every column not used as path/text/id/start/end goes into the item's metadata unchanged (label,
speaker, dialogue_id, split, fold, ...), which the ``cache:CACHE`` dataset reader turns into
labels, groups and splits. IEMOCAP clips::

    mmaffect extract /data/iemocap_clips/manifest.csv --output cache/iemocap \\
        --columns path=clip_file,text=transcript,id=utterance_id
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from mmaffect.errors import ConfigError, DataError

__all__ = ["add_parser", "run", "items_from_csv", "parse_columns"]

_ROLES = ("path", "text", "id", "start", "end")


def parse_columns(spec: str | dict[str, str] | None) -> dict[str, str]:
    """``"path=clip_file,text=transcript"`` -> ``{"path": "clip_file", "text": "transcript"}``."""
    if spec is None or spec == "":
        return {}
    if isinstance(spec, dict):
        return {str(k): str(v) for k, v in spec.items()}
    out: dict[str, str] = {}
    for part in spec.split(","):
        role, sep, column = part.partition("=")
        if not sep or not role.strip() or not column.strip():
            raise ConfigError(f"--columns expects role=column pairs separated by commas, got {part!r}")
        out[role.strip()] = column.strip()
    return out


def items_from_csv(path: str | Path, columns: str | dict[str, str] | None = None) -> list:
    """Read a manifest CSV into :class:`~mmaffect.extraction.pipeline.ExtractItem` s.

    Kept in one function so it can be swapped for the shared manifest reader later. Cells are read
    as strings; empty metadata cells become ``None``.
    """
    import pandas as pd

    from mmaffect.extraction.pipeline import ExtractItem

    path = Path(path).expanduser()
    mapping = parse_columns(columns)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError as exc:
        raise DataError(path, "manifest not found") from exc
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as exc:
        raise DataError(path, f"not a readable CSV file ({str(exc).splitlines()[0]})") from exc
    role_col = {role: mapping.get(role, role) for role in _ROLES}
    renamed = {column: role for role, column in mapping.items() if role not in _ROLES}
    missing = sorted({c for c in [role_col["path"], *mapping.values()] if c not in frame.columns})
    if missing:
        raise DataError(path, f"missing columns {', '.join(missing)} (have: {', '.join(frame.columns)})")
    used = {role_col[r] for r in _ROLES if role_col[r] in frame.columns}
    base = path.parent

    def number(value: str, role: str, row: int) -> float | None:
        if value.strip() == "":
            return None
        try:
            x = float(value)
        except ValueError:
            x = math.nan
        if not math.isfinite(x):
            raise DataError(path, f"row {row}: {role} {value!r} is not a number of seconds")
        return x

    items = []
    for i, row in enumerate(frame.to_dict("records")):
        line = i + 2  # 1-based, after the header
        rel = row[role_col["path"]].strip()
        if not rel:
            raise DataError(path, f"row {line}: empty {role_col['path']!r}")
        media = Path(rel).expanduser()
        media = media if media.is_absolute() else base / media
        item_id = row.get(role_col["id"], "").strip() if role_col["id"] in frame.columns else ""
        if not item_id:  # the row number, as the shared manifest reader numbers rows (header = row 1)
            item_id = str(line)
        text = row.get(role_col["text"]) if role_col["text"] in frame.columns else None
        meta = {renamed.get(k, k): (v if v != "" else None) for k, v in row.items() if k not in used}
        items.append(ExtractItem(
            id=item_id, path=media, text=text if text not in (None, "") else None,
            start=number(row[role_col["start"]], "start", line) if role_col["start"] in frame.columns else None,
            end=number(row[role_col["end"]], "end", line) if role_col["end"] in frame.columns else None,
            meta=meta,
        ))
    return items


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``extract`` sub-command to an ``argparse`` sub-parsers object."""
    p = subparsers.add_parser(
        "extract", help="extract audio/visual features and transcripts of raw media into a resumable cache",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("manifest", help="CSV with a path column (relative to the CSV), optional text/id columns")
    p.add_argument("--output", required=True, help="cache folder (re-run the same command to resume)")
    p.add_argument("--fps", type=float, default=2.0, help="video frames sampled per second (default 2)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1: in this process)")
    p.add_argument("--egemaps", action="store_true",
                   help="also openSMILE eGeMAPS functionals (audEERING licence: non-commercial use only)")
    p.add_argument("--columns", help="column roles, e.g. path=clip_file,text=transcript,id=utterance_id")
    p.add_argument("--asr", choices=["auto", "always", "never"], default="auto",
                   help="auto: transcribe rows without text; always: also rows with text (word times); never")
    p.add_argument("--asr-model", help="faster-whisper model (default: the packaged Whisper tiny.en)")
    p.add_argument("--max-side", type=int, default=640, help="downscale frames to this longest side")
    p.add_argument("--retry-failed", action="store_true", help="re-try items that failed before")
    p.add_argument("--strict", action="store_true", help="exit with status 1 if any item failed")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``extract``; returns 0 when the job finished (failed items are in report.csv), 1 with
    ``--strict`` when some item failed."""
    from mmaffect.extraction.pipeline import ExtractConfig, extract

    items = items_from_csv(args.manifest, args.columns)
    if not items:
        raise DataError(args.manifest, "the manifest has no rows")
    config = ExtractConfig(fps=args.fps, egemaps=args.egemaps, asr=args.asr, asr_model=args.asr_model,
                           max_side=args.max_side)
    report = extract(items, Path(args.output), config, workers=args.workers, progress=not args.quiet,
                     retry_failed=args.retry_failed)
    print(report.summary())
    for item_id, reason in list(report.failed.items())[:10]:
        print(f"  failed {item_id}: {reason}", file=sys.stderr)
    if report.n_failed > 10:
        print(f"  ... {report.n_failed - 10} more in {report.report_path}", file=sys.stderr)
    return 1 if args.strict and report.n_failed else 0
