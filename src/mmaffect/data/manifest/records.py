"""Reading a manifest's files into raw records: the ``manifest:`` argument, ``--columns``, CSV and JSONL
rows as dicts of strings (or JSON values), with malformed rows kept as problems, nothing interpreted."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

from mmaffect.errors import ConfigError, DataError

CANONICAL = ("id", "path", "text", "label", "score", "labels", "speaker", "dialogue_id", "utt_index",
             "split", "fold", "context", "start", "end")
TARGETS = ("label", "score", "labels")
SPLIT_NAMES = {"train": "train", "training": "train", "valid": "valid", "validation": "valid", "val": "valid",
               "dev": "valid", "development": "valid", "test": "test", "testing": "test"}
SPLIT_ORDER = ("train", "valid", "test")


# ------------------------------------------------------------------------------------------------------
# arguments and options
# ------------------------------------------------------------------------------------------------------


def parse_columns(text: str | dict | None) -> dict[str, str] | None:
    """``"text=Utterance,label=Emotion"`` (the ``--columns`` option) -> ``{"text": "Utterance", ...}``.

    ``label=`` (nothing after ``=``) switches a canonical column off, even if the file has one by that
    name. A dict is returned as is.
    """
    if text is None or isinstance(text, dict):
        return text
    out = {}
    for part in filter(None, (p.strip() for p in str(text).split(","))):
        canon, sep, column = part.partition("=")
        if not sep:
            raise ConfigError(f"--columns expects canonical=column items, got {part!r}")
        out[canon.strip()] = column.strip()
    return out


def split_argument(argument: str) -> list[tuple[str | None, Path]]:
    """``FILE`` -> ``[(None, FILE)]``; ``train=A,valid=B,test=C`` -> ``[("train", A), ...]`` in split order."""
    argument = argument.strip()
    if not argument:
        raise ConfigError("manifest: needs a file, e.g. manifest:data.csv or "
                          "manifest:train=train.csv,valid=dev.csv,test=test.csv")
    parts = argument.split(",")
    keyed = [re.match(r"^\s*(train|valid|dev|test)\s*=(.*)$", p) for p in parts]
    if not all(keyed):
        return [(None, Path(argument).expanduser())]
    specs: dict[str, Path] = {}
    for match in keyed:
        split = SPLIT_NAMES[match.group(1)]
        if split in specs:
            raise ConfigError(f"manifest:{argument}: split {split!r} given twice")
        if not match.group(2).strip():
            raise ConfigError(f"manifest:{argument}: no file given for {match.group(1)}")
        specs[split] = Path(match.group(2).strip()).expanduser()
    return [(s, specs[s]) for s in SPLIT_ORDER if s in specs]


def _file_format(path: Path, text: str) -> str:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix in (".csv", ".tsv", ".txt"):
        return "csv"
    return "jsonl" if text.lstrip().startswith("{") else "csv"


# ------------------------------------------------------------------------------------------------------
# reading records (no interpretation yet)
# ------------------------------------------------------------------------------------------------------


def _decode(raw: bytes, encoding: str) -> str:
    try:
        text = raw.decode(encoding, errors="surrogateescape")
    except UnicodeError:  # codecs without surrogateescape support (utf-16/32): strict
        text = raw.decode(encoding)
    return text[1:] if text.startswith("\ufeff") else text


def _bad_bytes(value: Any) -> str | None:
    """The first undecodable byte of a value read with surrogateescape, as ``0xNN``, or None."""
    values = value if isinstance(value, list) else [value]
    for v in values:
        if isinstance(v, str):
            for ch in v:
                if "\udc80" <= ch <= "\udcff":
                    return f"0x{ord(ch) - 0xDC00:02x}"
    return None


def _read_csv(text: str, path: Path) -> tuple[list[str], list[tuple[int, dict | None, str | None]]]:
    first = text.split("\n", 1)[0]
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    if delimiter == "," and "," not in first:
        delimiter = next((d for d in ("\t", ";", "|") if d in first), ",")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        return [], []
    except csv.Error as exc:
        raise DataError(path, f"row 1: the header is not valid CSV ({exc})") from exc
    header = [h.strip() for h in header]
    records: list[tuple[int, dict | None, str | None]] = []
    row = 1
    while True:
        row += 1
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            hint = (" (a quoted field is never closed: check the quotes from this row on)"
                    if "unexpected end of data" in str(exc) else " (quote fields holding quotes, commas or newlines)")
            records.append((row, None, f"malformed CSV near line {reader.line_num}: {exc}{hint}"))
            continue
        if not any(f.strip() for f in fields):
            continue  # blank line
        if len(fields) > len(header) and not any(f.strip() for f in fields[len(header):]):
            fields = fields[:len(header)]  # trailing delimiters
        if len(fields) != len(header):
            hint = "; a field holding a comma must be quoted" if len(fields) > len(header) else ""
            records.append((row, None, f"{len(fields)} fields, but the header has {len(header)}{hint}"))
            continue
        records.append((row, dict(zip(header, fields, strict=True)), None))
    return header, records


def _read_jsonl(text: str) -> tuple[list[str], list[tuple[int, dict | None, str | None]]]:
    header: dict[str, None] = {}
    records: list[tuple[int, dict | None, str | None]] = []
    # split on "\n" only: str.splitlines() would also split on U+2028 etc., which JSON strings may hold
    for row, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            records.append((row, None, f"not valid JSON ({exc.msg} at column {exc.colno})"))
            continue
        if not isinstance(value, dict):
            records.append((row, None, f"expected a JSON object {{...}}, got {type(value).__name__}"))
            continue
        header.update(dict.fromkeys(value))
        records.append((row, value, None))
    return list(header), records
