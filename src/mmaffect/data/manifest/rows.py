"""One manifest row: the canonical values parsed from a raw record, and the problems that make the row
(or only its targets) unusable."""

from __future__ import annotations

import codecs
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmaffect.data.manifest.records import SPLIT_NAMES, TARGETS, _bad_bytes

# Target cells that count as missing: exactly the strings pandas.read_csv reads as missing by default
# (its na_values, case as written), so a file means the same here as in pandas. Compared after
# stripping surrounding spaces. Other columns (text, id, speaker, ...) are taken literally.
MISSING = frozenset({"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
                     "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"})


@dataclass
class ManifestFile:
    """One file of a manifest and how its columns map to the canonical names."""

    path: Path
    format: str  # "csv" | "jsonl"
    split: str | None  # the split of every row (one file per split), else None
    columns: dict[str, str] = field(default_factory=dict)  # canonical -> column in this file
    header: list[str] = field(default_factory=list)
    media_root: Path | None = None  # resolved folder media paths are relative to; None: the file's folder

    @property
    def root(self) -> Path:
        return self.media_root or self.path.parent.resolve()

    @property
    def root_name(self) -> str:
        return "the media root" if self.media_root else "the manifest's folder"


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
    """A media path relative to the manifest's folder (or the media root), or the reason it cannot be used."""
    root, where = file.root, file.root_name
    given = Path(value.strip()).expanduser()
    lexical = Path(os.path.normpath(given if given.is_absolute() else root / given))
    if not lexical.is_relative_to(root):
        if given.is_absolute():
            return None, (f"path {value!r} is outside {where} {root} "
                          f"(media paths must be relative to {where}; see --media-root)")
        return None, f"path {value!r} resolves to {lexical}, outside {where} {root}"
    try:
        resolved = lexical.resolve()
    except (OSError, RuntimeError) as exc:  # symlink loops
        return None, f"path {value!r} cannot be resolved ({exc})"
    if not resolved.is_relative_to(root):
        return None, f"path {value!r} is a symlink to {resolved}, outside {where} {root}"
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
