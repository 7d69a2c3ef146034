"""Your own data as a dataset: ``manifest:FILE`` for a CSV or JSONL file, one row per utterance.

A row has text (``text``), a media file (``path``, relative to the manifest's folder) or both, and
optionally targets and structure. Canonical column names (use them in the file, or map your own with
``columns={"text": "Utterance", "label": "Emotion"}``, canonical name -> file column):

==============  ===================================================================================
``id``          unique utterance id (default: the row number; ``split:row`` for one file per split)
``path``        media file, relative to the manifest's folder (must stay inside it)
``text``        the utterance text (kept exactly as in the file: quotes, commas, newlines)
``label``       class (2 classes -> task ``binary``, more -> ``classification``)
``score``       number on any scale (task ``regression``)
``labels``      ``;``-separated tags (task ``multilabel``); in JSONL also a list
``speaker``     speaker id; the CV group unless ``--group-by`` says otherwise
``dialogue_id`` conversation id (qualified by the split when the corpus is one file per split)
``utt_index``   position in the dialogue (integer)
``split``       train | valid | test (also dev, val, validation)
``fold``        cross-validation fold (``--cv column``)
``context``     JSON list of earlier utterances, each a string or ``{"text": ..., "speaker": ...}``
``start/end``   a window of the media file in seconds (one utterance cut out of a long recording)
==============  ===================================================================================

``manifest:train=A.csv,valid=B.csv,test=C.csv`` reads a corpus shipped as one file per split; the
split of a row is the file it is in, and rows are ordered train, valid, test.

Target cells (``label``, ``score``, ``labels``) holding one of pandas' default missing-value strings
(``NA``, ``N/A``, ``None``, ``NaN``, ``null``, ... see :data:`MISSING`) are missing, as in pandas. A fixed
split with train and test rows but no valid rows gets validation rows carved from train (whole
dialogues or speakers, stratified, fixed seed; see :func:`_carve_validation`).

Every problem is found before anything is embedded or trained and reported at once, one line each,
``FILE: row N: problem`` (CSV rows are counted as in a spreadsheet: the header is row 1; JSONL rows
are line numbers), in one :class:`ManifestError`.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import io
import json
import logging
import math
import os
import re
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmaffect.data.dataset import AffectDataset, Modality
from mmaffect.data.registry import register_prefix
from mmaffect.data.text_features import text_modality
from mmaffect.errors import ConfigError, DataError

CANONICAL = ("id", "path", "text", "label", "score", "labels", "speaker", "dialogue_id", "utt_index",
             "split", "fold", "context", "start", "end")
TARGETS = ("label", "score", "labels")
SPLIT_NAMES = {"train": "train", "training": "train", "valid": "valid", "validation": "valid", "val": "valid",
               "dev": "valid", "development": "valid", "test": "test", "testing": "test"}
SPLIT_ORDER = ("train", "valid", "test")
TASK_KINDS = ("sentiment", "regression", "classification", "binary", "multilabel")
# Target cells that count as missing: exactly the strings pandas.read_csv reads as missing by default
# (its na_values, case as written), so a file means the same here as in pandas. Compared after
# stripping surrounding spaces. Other columns (text, id, speaker, ...) are taken literally.
MISSING = frozenset({"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
                     "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"})
# Most problem lines shown in an error message; ManifestError.problems keeps all of them.
MAX_LISTED = 200
# A fixed split without valid rows: this share of the training dialogues (else speakers, else rows) becomes
# the validation split, chosen with this seed, so every run and every re-run carves the same rows.
CARVE_FRACTION = 0.1
CARVE_SEED = 0

logger = logging.getLogger(__name__)


class ManifestError(DataError):
    """Everything wrong with a manifest, one line per problem (``FILE: row N: problem``)."""

    def __init__(self, source: str, problems: list[str], note: str | None = None):
        self.problems = list(problems)
        shown = self.problems[:MAX_LISTED]
        more = len(self.problems) - len(shown)
        lines = [f"{len(self.problems)} problem{'s' if len(self.problems) != 1 else ''} in {source} "
                 "(nothing was trained or written; fix them and re-run):", *shown]
        if more:
            kinds = Counter(_problem_kind(p) for p in self.problems[MAX_LISTED:])
            lines.append(f"... and {more} more: " + ", ".join(f"{n} x {k}" for k, n in kinds.most_common()))
        if note:
            lines.append(note)
        super().__init__(None, "\n".join(lines))
        self.path = source


def _problem_kind(line: str) -> str:
    reason = line.split(": ", 2)[-1]
    return re.sub(r"'[^']*'|\d+", "…", reason)[:60]


@dataclass
class ManifestFile:
    """One file of a manifest and how its columns map to the canonical names."""

    path: Path
    format: str  # "csv" | "jsonl"
    split: str | None  # the split of every row (one file per split), else None
    columns: dict[str, str] = field(default_factory=dict)  # canonical -> column in this file
    header: list[str] = field(default_factory=list)

    @property
    def root(self) -> Path:
        return self.path.parent.resolve()


@dataclass
class ManifestRow:
    """One parsed row. ``problems`` make the row unusable; ``target_problems`` only its targets."""

    file: ManifestFile
    row: int
    id: str = ""
    text: str = ""
    path: Path | None = None
    media: str | None = None  # the path as written in the file
    label: str | None = None
    label_is_number: bool = False
    score: float | None = None
    tags: list[str] | None = None
    speaker: str | None = None
    dialogue_id: str | None = None
    utt_index: int | None = None
    split: str | None = None
    fold: str | None = None
    context: list[dict] | None = None
    start: float | None = None
    end: float | None = None
    problems: list[str] = field(default_factory=list)
    target_problems: list[str] = field(default_factory=list)
    parsed: bool = True  # False when the row itself could not be read (malformed CSV/JSON)

    @property
    def where(self) -> str:
        return f"{self.file.path}: row {self.row}"

    @property
    def ok(self) -> bool:
        return not self.problems

    def all_problems(self) -> list[str]:
        return self.problems + self.target_problems


@dataclass
class Manifest:
    """A read and validated manifest: rows in dataset order and every problem found."""

    source: str
    files: list[ManifestFile]
    rows: list[ManifestRow]
    present: set[str]  # canonical columns the data has
    file_problems: list[str]
    class_names: list[str] | None
    tag_names: list[str] | None
    task: str | None
    encoding: str
    carved: dict | None = None  # how validation rows were carved from train (see _carve_validation)

    @property
    def problems(self) -> list[str]:
        """File-level problems first, then row problems in file and row order."""
        lines = list(self.file_problems)
        for r in self.rows:
            lines += [f"{r.where}: {p}" for p in r.all_problems()]
        return lines

    def raise_problems(self) -> None:
        if self.problems:
            raise ManifestError(self.source, self.problems)


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


# ------------------------------------------------------------------------------------------------------
# interpreting values
# ------------------------------------------------------------------------------------------------------


def _as_text(value: Any) -> str | None:
    """A field as a string; None when missing or JSON null. Numbers and booleans as JSON writes them."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if abs(value) < 1e15 else repr(value)
    if isinstance(value, int | float | str):
        return str(value)
    return None


def _is_missing(value: str | None) -> bool:
    return value is None or value.strip() in MISSING


def _missing_problem(canon: str, value: str | None) -> str:
    """``label is empty`` for an empty cell, ``label is missing ('NA')`` for a missing-value marker."""
    marker = (value or "").strip()
    return f"{canon} is missing ({marker!r})" if marker else f"{canon} is empty"


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        return None


def _is_number_like(value: str) -> bool:
    number = _number(value)
    return number is not None and math.isfinite(number)


def _parse_context(value: Any) -> tuple[list[dict] | None, str | None]:
    """A context cell -> ``[{"text": str, "speaker": str | None}, ...]`` or a problem."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return [], None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            return None, f"context is not valid JSON ({exc.msg} at character {exc.pos + 1}); expected a JSON list"
    if not isinstance(value, list):
        return None, f"context must be a JSON list of earlier utterances, got {type(value).__name__}"
    out = []
    for k, item in enumerate(value, start=1):
        if isinstance(item, str):
            out.append({"text": item, "speaker": None})
        elif isinstance(item, dict):
            extra = sorted(set(item) - {"text", "speaker"})
            if extra:
                return None, f"context item {k} has unknown keys {', '.join(map(repr, extra))} (allowed: text, speaker)"
            if not isinstance(item.get("text"), str):
                return None, f"context item {k} needs a string 'text'"
            speaker = item.get("speaker")
            if speaker is not None and not isinstance(speaker, str | int):
                return None, f"context item {k}: 'speaker' must be a string"
            out.append({"text": item["text"], "speaker": None if speaker is None else str(speaker)})
        else:
            return None, f"context item {k} must be a string or {{\"text\", \"speaker\"}}, got {type(item).__name__}"
    return out, None


def _resolve_media(value: str, file: ManifestFile) -> tuple[Path | None, str | None]:
    """A media path relative to the manifest's folder, or the reason it cannot be used."""
    root = file.root
    given = Path(value.strip()).expanduser()
    lexical = Path(os.path.normpath(given if given.is_absolute() else root / given))
    if not lexical.is_relative_to(root):
        if given.is_absolute():
            return None, (f"path {value!r} is outside the manifest's folder {root} "
                          "(media paths must be relative to the manifest's folder)")
        return None, f"path {value!r} resolves to {lexical}, outside the manifest's folder {root}"
    try:
        resolved = lexical.resolve()
    except (OSError, RuntimeError) as exc:  # symlink loops
        return None, f"path {value!r} cannot be resolved ({exc})"
    if not resolved.is_relative_to(root):
        return None, f"path {value!r} is a symlink to {resolved}, outside the manifest's folder {root}"
    if not resolved.exists():
        return None, f"media file {value!r} not found (looked for {resolved})"
    if resolved.is_dir():
        return None, f"media path {value!r} is a folder, not a file"
    try:
        with open(resolved, "rb") as handle:
            if not handle.read(1):
                return None, f"media file {value!r} is empty (0 bytes)"
    except OSError as exc:
        return None, f"media file {value!r} is not readable ({exc.strerror or exc})"
    return resolved, None


def _parse_row(values: dict, file: ManifestFile, row: int, encoding: str, multi: bool, purpose: str
               ) -> ManifestRow:
    r = ManifestRow(file=file, row=row)
    cols = file.columns

    def raw(canon: str) -> Any:
        return values.get(cols[canon]) if canon in cols else None

    skip: set[str] = set()
    for canon, column in cols.items():
        byte = _bad_bytes(values.get(column))
        if byte:
            skip.add(canon)
            hint = "pass encoding='cp1252' (or 'latin-1') if the file is not UTF-8" if \
                codecs.lookup(encoding).name == "utf-8" else f"the file is not valid {encoding} here"
            problem = f"column {column!r} ({canon}) is not valid {encoding} text (byte {byte}); {hint}"
            (r.target_problems if canon in TARGETS else r.problems).append(problem)

    def text_of(canon: str) -> str | None:
        if canon in skip:
            return None
        value = raw(canon)
        if value is not None and not isinstance(value, int | float | str | bool):
            r.problems.append(f"{canon} must be a string, got a JSON {type(value).__name__}")
            return None
        return _as_text(value)

    default_id = f"{file.split}:{row}" if multi else str(row)
    if "id" in cols:
        value = text_of("id")
        if value is None or not value.strip():
            if "id" not in skip:
                r.problems.append("id is empty")
            r.id = default_id
        else:
            r.id = value.strip()
    else:
        r.id = default_id

    r.text = text_of("text") or ""
    if "path" in cols:
        value = text_of("path")
        if value is not None and value.strip():
            r.media = value.strip()
            r.path, problem = _resolve_media(value, file)
            if problem:
                r.problems.append(problem)
    if not r.text.strip() and r.media is None and not ({"text", "path"} & skip):
        if "text" in cols and "path" in cols:
            r.problems.append("no text and no media path")
        elif "text" in cols:
            r.problems.append("empty text")
        else:
            r.problems.append("no media path")

    strict = purpose == "train"
    if "label" in cols and "label" not in skip:
        value = raw("label")
        if isinstance(value, list | dict):
            r.target_problems.append(f"label must be a single class, got a JSON {type(value).__name__} "
                                     "(use the labels column for tags)")
        else:
            text = _as_text(value)
            if _is_missing(text):
                if strict:
                    r.target_problems.append(_missing_problem("label", text))
            else:
                r.label = text.strip()
                r.label_is_number = _is_number_like(r.label)
    if "score" in cols and "score" not in skip:
        value = raw("score")
        text = _as_text(value)
        if text is None and value is not None:
            r.target_problems.append(f"score must be a number, got a JSON {type(value).__name__}")
        elif _is_missing(text):
            if strict:
                r.target_problems.append(_missing_problem("score", text))
        else:
            number = _number(value)
            if number is None:
                r.target_problems.append(f"score {text!r} is not a number")
            elif not math.isfinite(number):
                r.target_problems.append(f"score {text!r} is not a finite number")
            else:
                r.score = number
    if "labels" in cols and "labels" not in skip:
        value = raw("labels")
        if isinstance(value, list):
            if all(isinstance(v, str | int) and not isinstance(v, bool) for v in value):
                r.tags = sorted({str(v).strip() for v in value if str(v).strip()})
            else:
                r.target_problems.append("labels must be a list of tag strings")
        else:
            text = _as_text(value)
            if text is not None and text.strip() and _is_missing(text):
                r.target_problems.append(f"{_missing_problem('labels', text)}; leave the cell empty for no tags")
            else:
                r.tags = sorted({t.strip() for t in (text or "").split(";") if t.strip()})

    for canon in ("speaker", "dialogue_id"):
        if canon in cols:
            value = text_of(canon)
            if value is None or not value.strip():
                if canon not in skip:
                    r.problems.append(f"{canon} is empty")
            else:
                setattr(r, canon, value.strip())
    if multi and r.dialogue_id is not None:
        r.dialogue_id = f"{file.split}:{r.dialogue_id}"  # dialogue ids often restart in every file
    if "utt_index" in cols:
        value = text_of("utt_index")
        number = None if value is None else _number(value)
        if value is None or not value.strip():
            if "utt_index" not in skip:
                r.problems.append("utt_index is empty")
        elif number is None or not math.isfinite(number) or not float(number).is_integer():
            r.problems.append(f"utt_index {value!r} is not an integer")
        else:
            r.utt_index = int(number)
    r.split = file.split
    if "split" in cols:
        value = text_of("split")
        name = SPLIT_NAMES.get((value or "").strip().lower())
        if name is None:
            if "split" not in skip:
                r.problems.append(f"split {value or ''!r} is not one of train, valid (or dev), test")
        elif file.split is not None and name != file.split:
            r.problems.append(f"split {value!r} disagrees with the file it is in ({file.split}=...)")
        else:
            r.split = name
    if "fold" in cols:
        value = text_of("fold")
        if value is None or not value.strip():
            if "fold" not in skip:
                r.problems.append("fold is empty")
        else:
            r.fold = value.strip()
    if "context" in cols and "context" not in skip:
        r.context, problem = _parse_context(raw("context"))
        if problem:
            r.problems.append(problem)
    for canon in ("start", "end"):
        value = text_of(canon) if canon in cols else None
        if value is not None and value.strip():
            number = _number(value)
            if number is None or not math.isfinite(number) or number < 0:
                r.problems.append(f"{canon} {value!r} is not a time in seconds")
            else:
                setattr(r, canon, float(number))
    if r.start is not None and r.end is not None and r.end <= r.start:
        r.problems.append(f"end {r.end:g} s is not after start {r.start:g} s")
    return r


# ------------------------------------------------------------------------------------------------------
# whole-manifest checks
# ------------------------------------------------------------------------------------------------------


def _class_order(names: set[str], numeric: bool) -> list[str]:
    """Classes in sorted order: numerically when every label is a number, else alphabetically."""
    return sorted(names, key=lambda n: (float(n), n)) if numeric else sorted(names)


def _check_label_types(rows: list[ManifestRow]) -> None:
    labelled = [r for r in rows if r.label is not None]
    numbers = [r for r in labelled if r.label_is_number]
    words = [r for r in labelled if not r.label_is_number]
    if numbers and words:
        odd, other, kind, other_kind = ((numbers, words, "a number", "words") if len(numbers) < len(words)
                                        else (words, numbers, "a word", "numbers"))
        for r in odd:
            r.target_problems.append(f"label {r.label!r} is {kind}, but {len(other)} other labels in this column "
                                     f"are {other_kind} (mixed label types)")
            r.label = None


def _resolve_task(task: str | None, present: set[str], classes: list[str] | None, numeric_labels: bool
                  ) -> tuple[str | None, bool, list[str]]:
    """The task (inferred from the columns unless given), whether ``label`` serves as the score, problems."""
    problems: list[str] = []
    if task is None:
        kinds = []
        if "score" in present:
            kinds.append("regression")
        if "label" in present and classes:
            kinds.append("binary" if len(classes) == 2 else "classification")
        if "labels" in present:
            kinds.append("multilabel")
        return ("+".join(kinds) or None), False, problems
    kinds = task.split("+")
    unknown = [k for k in kinds if k not in TASK_KINDS]
    if unknown:
        return task, False, [f"unknown task {'+'.join(unknown)!r}; choose from {', '.join(TASK_KINDS)} (or a+b)"]
    label_as_score = False
    if any(k in ("regression", "sentiment") for k in kinds) and "score" not in present:
        if "label" in present and numeric_labels and not any(k in ("binary", "classification") for k in kinds):
            label_as_score = True
        else:
            problems.append(f"task {task!r} needs a score column (map one with columns={{'score': ...}})")
    if any(k in ("binary", "classification") for k in kinds) and "label" not in present:
        problems.append(f"task {task!r} needs a label column (map one with columns={{'label': ...}})")
    if "binary" in kinds and classes is not None and len(classes) != 2:
        problems.append(f"task 'binary' needs 2 classes; the label column has {len(classes)}: "
                        + ", ".join(classes[:20]) + (" ..." if len(classes) > 20 else ""))
    if "multilabel" in kinds and "labels" not in present:
        problems.append(f"task {task!r} needs a labels column of ';'-separated tags")
    return task, label_as_score, problems


def _check_training_targets(rows: list[ManifestRow], folds: int | str | None, classes: bool = True) -> None:
    """Targets a model cannot learn: test/valid labels never seen in training, classes too rare for CV."""
    has_split = any(r.split is not None for r in rows)
    if has_split:
        seen = {r.label for r in rows if r.split == "train" and r.label is not None}
        seen_tags = {t for r in rows if r.split == "train" and r.tags for t in r.tags}
        for r in rows:
            if r.split in ("valid", "test"):
                if classes and r.label is not None and r.label not in seen:
                    r.target_problems.append(f"label {r.label!r} is in the {r.split} split but never in train")
                for tag in (r.tags or []):
                    if tag not in seen_tags:
                        r.target_problems.append(f"tag {tag!r} is in the {r.split} split but never in train")
    by_class: dict[str, list[ManifestRow]] = {}
    for r in rows if classes else []:  # a numeric label column used as the score has no classes
        if r.label is not None:
            by_class.setdefault(r.label, []).append(r)
    if isinstance(folds, int):
        for label, members in by_class.items():
            if len(members) < folds:
                for r in members:
                    r.target_problems.append(f"label {label!r} has only {len(members)} rows, fewer than the "
                                             f"{folds} cross-validation folds")
    elif folds == "column" or (not has_split and any(r.fold is not None for r in rows)):
        fold_names = {r.fold for r in rows if r.fold is not None}
        if len(fold_names) > 1:
            for label, members in by_class.items():
                where = {r.fold for r in members}
                if len(where) == 1:
                    fold = next(iter(where))
                    for r in members:
                        r.target_problems.append(f"label {label!r} occurs only in fold {fold}, so it is never "
                                                 f"in training when fold {fold} is tested")


def _check_fixed_split(rows: list[ManifestRow], source: str) -> str | None:
    """A fixed split (no CV) must have train and test rows; valid ones may be carved from train."""
    counts = Counter(r.split for r in rows if r.split is not None)
    missing = [s for s in ("train", "test") if not counts[s]]
    if not counts or not missing:
        return None
    have = " / ".join(f"{s} {counts[s]}" for s in SPLIT_ORDER if counts[s])
    return (f"{source}: the split has no {' and no '.join(missing)} rows ({have}); a fixed split needs train and "
            "test rows (valid rows are carved from train when there are none), or cross-validate with --cv K")


def _carve_strata(rows: list[ManifestRow], classes: bool) -> np.ndarray:
    if classes and any(r.label is not None for r in rows):
        return np.array([r.label or "" for r in rows], dtype=object).astype(str)
    scores = np.array([np.nan if r.score is None else r.score for r in rows], dtype=float)
    if np.isfinite(scores).any():
        return (scores >= np.nanmedian(scores)).astype(int)
    return np.zeros(len(rows), dtype=int)


def _carve_candidates(strata: np.ndarray, groups: np.ndarray | None):
    """Candidate validation row sets, best first: the folds of a stratified group 10-fold split of the
    training groups, or (no groups) stratified 10 % row samples; all with the fixed seed."""
    from sklearn.model_selection import ShuffleSplit, StratifiedGroupKFold, StratifiedShuffleSplit

    n = len(strata)
    with warnings.catch_warnings():  # rare classes: sklearn warns that it cannot stratify them exactly
        warnings.simplefilter("ignore", UserWarning)
        if groups is not None:
            folds = min(round(1 / CARVE_FRACTION), len(set(groups.tolist())))
            if max(Counter(strata.tolist()).values()) < folds:  # sklearn refuses: no class fills every fold
                strata = np.zeros(n, dtype=int)
            splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=CARVE_SEED)
            yield from (valid for _, valid in splitter.split(np.zeros(n), strata, groups))
            return
        counts = Counter(strata.tolist())
        size = max(round(CARVE_FRACTION * n), 1)
        stratify = min(counts.values()) >= 2 and n - max(size, len(counts)) >= len(counts)
        if stratify:
            size = max(size, len(counts))
        splitter = (StratifiedShuffleSplit if stratify else ShuffleSplit)(
            n_splits=10, test_size=size, random_state=CARVE_SEED)
        yield from (valid for _, valid in splitter.split(np.zeros(n), strata if stratify else None))


def _carve_validation(rows: list[ManifestRow], present: set[str], classes: bool) -> tuple[dict | None, str | None]:
    """Move a fixed share of the training rows to valid when the split has train and test but no valid.

    Whole dialogues are moved (or whole speakers when there is no ``dialogue_id``), so no conversation
    straddles train and valid, stratified by label (or by score above/below its median). The first
    candidate that leaves every class and tag in train is taken. Test rows are never touched.
    Returns (a record of what was carved, None) or (None, the reason it could not be done).
    """
    train = [r for r in rows if r.split == "train"]
    if len(train) < 2:
        return None, f"only {len(train)} train row(s): too few to carve validation rows from; add valid rows"
    key = next((k for k in ("dialogue_id", "speaker") if k in present), None)
    groups = np.array([getattr(r, key) or "" for r in train], dtype=str) if key else None
    if groups is not None and len(set(groups.tolist())) < 2:
        key, groups = None, None  # one dialogue/speaker: carve rows
    strata = _carve_strata(train, classes)
    labels = {r.label for r in train if r.label is not None}
    tags = {t for r in train for t in (r.tags or [])}
    for valid in _carve_candidates(strata, groups):
        chosen = set(valid.tolist())
        kept = [r for k, r in enumerate(train) if k not in chosen]
        if not kept or not chosen:
            continue
        if classes and {r.label for r in kept if r.label is not None} != labels:
            continue
        if {t for r in kept for t in (r.tags or [])} != tags:
            continue
        for k in chosen:
            train[k].split = "valid"
        record = {"from": "train", "rows": len(chosen), "of_rows": len(train), "seed": CARVE_SEED,
                  "fraction": CARVE_FRACTION, "group_by": key,
                  "stratified_by": "label" if classes and labels else ("score" if "score" in present else None)}
        if groups is not None:
            record |= {"groups": len(set(groups[valid].tolist())), "of_groups": len(set(groups.tolist()))}
        return record, None
    return None, ("cannot carve validation rows from train without taking every row of some class or tag "
                  "out of training; add valid rows or cross-validate with --cv K")


def describe_carve(carved: dict) -> str:
    """One line: what was carved from train, and how (shown at train time, kept in the dataset meta)."""
    unit = {"dialogue_id": "dialogues", "speaker": "speakers"}.get(carved["group_by"])
    what = (f"{carved['groups']} of {carved['of_groups']} train {unit} ({carved['rows']} of {carved['of_rows']} "
            f"rows)" if unit else f"{carved['rows']} of {carved['of_rows']} train rows")
    how = f"stratified by {carved['stratified_by']}" if carved["stratified_by"] else "not stratified"
    return (f"no valid rows: valid = {what}, about {carved['fraction']:.0%} of train, {how}, seed {carved['seed']}; "
            "test rows untouched")


# ------------------------------------------------------------------------------------------------------
# reading and validating
# ------------------------------------------------------------------------------------------------------


def read_manifest(argument: str, columns: dict[str, str] | str | None = None, encoding: str = "utf-8",
                  task: str | None = None, *, purpose: str = "train", folds: int | str | None = None,
                  default_columns: dict[str, str] | None = None) -> Manifest:
    """Read and validate a manifest without embedding anything.

    Args:
        argument: ``FILE`` or ``train=F1,valid=F2,test=F3`` (the part after ``manifest:``).
        columns: canonical name -> file column; unmapped canonical names are used if the file has them.
        encoding: text encoding of the files (e.g. ``cp1252``, ``latin-1``).
        task: the task, inferred from the target columns when None.
        purpose: ``"train"`` checks everything a training run needs; ``"predict"`` lets targets be
            missing or blank (an unlabelled manifest) and skips the checks that only matter for training.
        folds: the number of CV folds (or ``"column"``), to check every class has enough rows.
        default_columns: mappings used when ``columns`` does not name a canonical column and the file
            has the mapped column (``predict`` passes the mapping the checkpoint was trained with).

    Returns the manifest; ``manifest.problems`` lists every problem found (empty when it is valid).
    """
    columns = parse_columns(columns) or {}
    try:
        encoding = codecs.lookup(encoding).name
    except LookupError as exc:
        raise ConfigError(f"unknown text encoding {encoding!r} (e.g. utf-8, cp1252, latin-1)") from exc
    specs = split_argument(argument)
    source = f"manifest:{argument}"
    multi = specs[0][0] is not None
    file_problems: list[str] = []
    unknown = sorted(set(columns) - set(CANONICAL))
    if unknown:
        file_problems.append(f"{source}: unknown canonical column{'s' if len(unknown) > 1 else ''} "
                             f"{', '.join(map(repr, unknown))} in columns; known: {', '.join(CANONICAL)}")
    files: list[ManifestFile] = []
    rows: list[ManifestRow] = []
    for split, path in specs:
        try:
            raw = path.read_bytes()
        except FileNotFoundError as exc:
            raise DataError(path, "manifest file not found") from exc
        except OSError as exc:
            raise DataError(path, f"cannot read the manifest ({exc.strerror or exc})") from exc
        try:
            text = _decode(raw, encoding)
        except UnicodeError as exc:
            raise DataError(path, f"cannot decode the file as {encoding} ({exc})") from exc
        fmt = _file_format(path, text)
        header, records = _read_jsonl(text) if fmt == "jsonl" else _read_csv(text, path)
        file = ManifestFile(path=path, format=fmt, split=split, header=header)
        files.append(file)
        if not header:
            file_problems.append(f"{path}: empty file (no header and no rows)")
            continue
        bad_header = [h for h in header if _bad_bytes(h)]
        if bad_header:
            file_problems.append(f"{path}: row 1: the header is not valid {encoding} text; pass encoding=...")
        dupes = sorted(h for h, n in Counter(header).items() if n > 1)
        if dupes:
            file_problems.append(f"{path}: row 1: duplicate column names {', '.join(map(repr, dupes))}")
        for canon in CANONICAL:
            if canon in columns or (default_columns and canon in default_columns and
                                    default_columns[canon] in header):
                mapped = columns.get(canon, (default_columns or {}).get(canon))
                if not mapped:
                    continue  # switched off
                if mapped in header:
                    file.columns[canon] = mapped
                elif purpose == "train" or canon not in TARGETS:
                    close = difflib.get_close_matches(mapped, header, n=1, cutoff=0.6)
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                    file_problems.append(f"{path}: missing column {mapped!r} (mapped to {canon}){hint}; "
                                         f"the file has: {', '.join(header)}")
            elif canon in header:
                file.columns[canon] = canon
        if not {"text", "path"} & set(file.columns) and not {"text", "path"} & set(columns):
            file_problems.append(f"{path}: missing column: no 'text' or 'path' column (map one, e.g. "
                                 f"columns={{'text': 'Utterance'}}); the file has: {', '.join(header)}")
        if not records:
            file_problems.append(f"{path}: no rows below the header")
        for row, values, problem in records:
            if values is None:
                rows.append(ManifestRow(file=file, row=row, id=f"{split}:{row}" if multi else str(row),
                                        problems=[problem], parsed=False))
            else:
                rows.append(_parse_row(values, file, row, encoding, multi, purpose))
    present = set().union(*(f.columns for f in files)) if files else set()
    if multi and purpose == "train":
        for canon in sorted(present - {"split"} - set(columns)):
            for f in files:
                if f.header and canon not in f.columns:
                    other = next(g for g in files if canon in g.columns)
                    file_problems.append(f"{f.path}: missing column for {canon} ({other.columns[canon]!r}), "
                                         f"which {other.path} has")
    if purpose == "train" and files and not present & set(TARGETS) and not file_problems:
        file_problems.append(f"{source}: missing column: no label, score or labels column, so there is nothing "
                             "to train on (map one, e.g. columns={'label': 'Emotion'})")

    # duplicate ids
    first: dict[str, ManifestRow] = {}
    for r in rows:
        if not r.parsed:
            continue
        if r.id in first:
            other = first[r.id]
            at = f"row {other.row}" if other.file is r.file else f"{other.file.path} row {other.row}"
            r.problems.append(f"duplicate id {r.id!r} (also {at})")
        else:
            first[r.id] = r

    _check_label_types(rows)
    labels = {r.label for r in rows if r.label is not None}
    numeric = bool(labels) and all(r.label_is_number for r in rows if r.label is not None)
    class_names = _class_order(labels, numeric) if labels else None
    tag_names = sorted({t for r in rows if r.tags for t in r.tags}) or None
    if tag_names:
        clash = sorted({"micro", "macro"} & set(tag_names))
        if clash:
            file_problems.append(f"{source}: tag names {', '.join(map(repr, clash))} are reserved "
                                 "(they clash with the f1_micro/f1_macro metrics); rename them")
    resolved_task, label_as_score, task_problems = _resolve_task(
        task, present, class_names, numeric)
    carved = None
    if purpose == "train":
        file_problems += [f"{source}: {p}" for p in task_problems]
        if label_as_score:
            for r in rows:
                r.score = float(r.label) if r.label is not None else None
        if folds is None:  # a fixed split (no cross-validation)
            split_problem = _check_fixed_split(rows, source)
            if split_problem:
                file_problems.append(split_problem)
            elif any(r.split for r in rows) and not any(r.split == "valid" for r in rows):
                carved, carve_problem = _carve_validation(rows, present, classes=not label_as_score)
                if carve_problem:
                    file_problems.append(f"{source}: {carve_problem}")
        kinds = (resolved_task or "").split("+")
        if any(k in ("binary", "classification") for k in kinds) and class_names and len(class_names) < 2:
            file_problems.append(f"{source}: the label column has only one class ({class_names[0]!r}); "
                                 "a classifier needs at least 2")
        _check_training_targets(rows, folds, classes=not label_as_score)
    manifest = Manifest(source=source, files=files, rows=rows, present=present, file_problems=file_problems,
                        class_names=None if label_as_score else class_names, tag_names=tag_names,
                        task=resolved_task, encoding=encoding, carved=carved)
    if label_as_score:
        manifest.present = (present - {"label"}) | {"score"}
    return manifest


# ------------------------------------------------------------------------------------------------------
# building the dataset
# ------------------------------------------------------------------------------------------------------


def check_features(media_rows: Sequence[ManifestRow], features_dir: str | Path | None) -> Path:
    """The features folder media rows need, checked before any text is embedded (a wrong ``--features``
    should cost nothing)."""
    first = media_rows[0]
    if features_dir is None:
        raise DataError(first.file.path, f"{len(media_rows)} media rows need extracted features: run "
                                         f"`mmaffect extract {first.file.path} --output DIR` and pass --features DIR "
                                         "(or switch the path column off with --columns path= to use the text only)")
    features_dir = Path(features_dir).expanduser()
    if features_dir.is_file():
        raise DataError(features_dir, "is a file; --features expects the folder written by "
                                      "`mmaffect extract FILE --output DIR`")
    if not features_dir.is_dir():
        raise DataError(features_dir, "features folder not found (make it with `mmaffect extract FILE --output DIR`)")
    return features_dir


def _media_modalities(manifest_rows: Sequence[ManifestRow], features_dir: str | Path | None,
                      sequences: bool) -> dict[str, Modality]:
    """Audio/video (and, for rows without text, transcript) features of the media rows, in their order.

    The one seam between manifests and :mod:`mmaffect.extraction`: given the media rows (their
    ``id``, resolved ``path``, ``file``), return ``{"a"|"v"|"t": Modality}`` with one row per media row.
    """
    features_dir = check_features(manifest_rows, features_dir)
    try:
        from mmaffect import extraction
    except ImportError as exc:
        raise DataError(features_dir, "media feature extraction (mmaffect.extraction) is not available in "
                                      "this installation") from exc
    load = getattr(extraction, "manifest_modalities", None)
    if load is None:
        raise DataError(features_dir, "mmaffect.extraction has no manifest_modalities(); media manifests "
                                      "are not connected yet")
    return load(features_dir, ids=[r.id for r in manifest_rows], paths=[r.path for r in manifest_rows],
                sequences=sequences)


def _assemble(n: int, parts: list[tuple[np.ndarray, Modality]]) -> Modality:
    """One modality over ``n`` rows from parts covering some of them; rows no part covers are zeros."""
    dim = parts[0][1].dim
    vector = torch.zeros(n, dim)
    with_seq = all(m.sequence is not None for _, m in parts)
    width = max((m.sequence.shape[1] for _, m in parts), default=1) if with_seq else 0
    sequence = torch.zeros(n, max(width, 1), parts[0][1].seq_dim, dtype=parts[0][1].sequence.dtype) \
        if with_seq else None
    lengths = torch.ones(n, dtype=torch.long) if with_seq else None
    for index, mod in parts:
        idx = torch.as_tensor(index, dtype=torch.long)
        if mod.dim != dim:
            raise DataError(None, f"modality parts have widths {dim} and {mod.dim}")
        vector[idx] = mod.vector.float()
        if with_seq:
            sequence[idx, :mod.sequence.shape[1]] = mod.sequence.to(sequence.dtype)
            lengths[idx] = mod.lengths
    return Modality(vector, sequence, lengths)


def build_modalities(rows: Sequence[ManifestRow], sequences: bool, features: str | Path | None,
                     need_media: bool = True) -> tuple[dict[str, Modality], dict]:
    """Text rows are embedded with the MiniLM encoder; media rows go through :func:`_media_modalities`.

    A text-only manifest never touches media extraction. In a mixed manifest a row lacking a modality
    gets zeros for it (text of media rows without text comes from the extractor when it provides it).
    """
    n = len(rows)
    text_rows = np.array([i for i, r in enumerate(rows) if r.text.strip()], dtype=np.int64)
    media_rows = np.array([i for i, r in enumerate(rows) if r.path is not None], dtype=np.int64)
    # media first: a missing or wrong features folder is reported before any text is embedded
    media = (_media_modalities([rows[i] for i in media_rows], features, sequences)
             if need_media and len(media_rows) else {})
    modalities: dict[str, Modality] = {}
    recipe: dict = {}
    if len(text_rows) == n:
        modalities["t"], recipe = text_modality([r.text for r in rows], sequences)
    parts: dict[str, list[tuple[np.ndarray, Modality]]] = {}
    if 0 < len(text_rows) < n:
        text, recipe = text_modality([rows[i].text for i in text_rows], sequences)
        parts["t"] = [(text_rows, text)]
    for key, mod in media.items():
        if key == "t" and "t" in modalities:
            continue
        if key == "t" and len(text_rows):  # the extractor's transcripts only where the file has no text
            keep = np.flatnonzero(~np.isin(media_rows, text_rows))
            if len(keep):
                parts["t"].append((media_rows[keep], mod.take(torch.as_tensor(keep))))
            continue
        parts.setdefault(key, []).append((media_rows, mod))
    if media:
        recipe["media_rows"] = int(len(media_rows))
    for key in ("t", "a", "v"):
        if key in parts:
            modalities[key] = _assemble(n, parts[key])
    return modalities, recipe


def _split_description(manifest: Manifest, rows: Sequence[ManifestRow]) -> str | None:
    counts = Counter(r.split for r in rows if r.split is not None)
    if not counts:
        return None
    how = "one file per split" if manifest.files[0].split is not None else "the manifest's split column"
    text = f"{how}: " + " / ".join(f"{s} {counts[s]}" for s in SPLIT_ORDER if counts[s])
    return text + (f" ({describe_carve(manifest.carved)})" if manifest.carved else "")


def build_dataset(manifest: Manifest, rows: Sequence[ManifestRow] | None = None, *, sequences: bool = False,
                  features: str | Path | None = None, need_media: bool = True, targets: bool = True,
                  name: str | None = None) -> AffectDataset:
    """The :class:`AffectDataset` of (a subset of) the rows of a validated manifest."""
    rows = list(manifest.rows if rows is None else rows)
    if not rows:
        raise DataError(manifest.source, "no usable rows")
    modalities, recipe = build_modalities(rows, sequences, features, need_media)
    present = manifest.present
    label = score = labels = None
    if targets and manifest.class_names and "label" in present:
        lookup = {c: i for i, c in enumerate(manifest.class_names)}
        label = torch.tensor([lookup[r.label] for r in rows], dtype=torch.long)
    if targets and "score" in present:
        score = torch.tensor([r.score for r in rows], dtype=torch.float32)
    if targets and manifest.tag_names:
        labels = torch.zeros(len(rows), len(manifest.tag_names))
        index = {t: j for j, t in enumerate(manifest.tag_names)}
        for i, r in enumerate(rows):
            for t in r.tags or []:
                labels[i, index[t]] = 1.0

    def column(attr: str, dtype=str):
        if attr not in present and not (attr == "split" and any(r.split for r in rows)):
            return None
        return np.array([getattr(r, attr) for r in rows], dtype=dtype)

    fold = column("fold", object)
    if fold is not None:
        try:
            fold = np.array([int(f) for f in fold], dtype=np.int64)
        except ValueError:
            fold = fold.astype(str)
    speaker, dialogue = column("speaker"), column("dialogue_id")
    meta = {**recipe, "source": manifest.source, "files": [str(f.path) for f in manifest.files],
            "format": manifest.files[0].format, "encoding": manifest.encoding,
            "columns": dict(manifest.files[0].columns), "rows": len(rows)}
    split_text = _split_description(manifest, rows)
    if split_text:
        meta["split"] = split_text
    if manifest.carved:
        meta["valid_carved"] = dict(manifest.carved)
    context = None
    if "context" in present:
        context = np.empty(len(rows), dtype=object)
        context[:] = [r.context or [] for r in rows]
    return AffectDataset(
        name=name or manifest.source,
        ids=np.array([r.id for r in rows], dtype=str),
        modalities=modalities,
        score=score,
        label=label,
        class_names=list(manifest.class_names) if label is not None else None,
        labels=labels,
        tag_names=list(manifest.tag_names) if labels is not None else None,
        split=column("split"),
        fold=fold,
        dialogue_id=dialogue,
        speaker=speaker,
        utt_index=column("utt_index", np.int64),
        context=context,
        group=speaker if speaker is not None else dialogue,
        default_task=manifest.task or "classification",
        meta=meta,
    )


@register_prefix("manifest", description="your own CSV/JSONL file: text and/or media paths, labels, splits "
                                         "(manifest:FILE or manifest:train=F1,valid=F2,test=F3)")
def load_manifest(argument: str, sequences: bool = False, columns: dict[str, str] | None = None,
                  encoding: str = "utf-8", task: str | None = None, features: str | None = None,
                  folds: int | str | None = None) -> AffectDataset:
    """Read, validate and embed a manifest (see the module docstring for its columns).

    Args:
        argument: ``FILE`` or ``train=F1,valid=F2,test=F3``.
        sequences: also keep token sequences (sequence models).
        columns: canonical name -> column of the file, e.g. ``{"text": "Utterance", "label": "Emotion"}``
            (or the ``--columns`` string ``"text=Utterance,label=Emotion"``).
        encoding: the files' text encoding.
        task: override the task inferred from the target columns (``label`` -> binary/classification,
            ``score`` -> regression, ``labels`` -> multilabel). ``regression`` on a numeric ``label``
            column uses it as the score.
        features: folder of extracted media features (``mmaffect extract``), needed for media rows.
        folds: cross-validation fold count (or ``"column"``), so classes too rare for it are reported.

    Raises:
        ManifestError: listing every problem, one line each, before anything is embedded.
    """
    manifest = read_manifest(argument, columns, encoding, task, purpose="train", folds=folds)
    manifest.raise_problems()
    if manifest.carved:
        logger.warning("%s: %s", manifest.source, describe_carve(manifest.carved))
    if "context" in manifest.present:
        logger.warning("%s: the context column is read (data.context) but no model uses it yet: results are the "
                       "same with and without it", manifest.source)
    return build_dataset(manifest, sequences=sequences, features=features)
