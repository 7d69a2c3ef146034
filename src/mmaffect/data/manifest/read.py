"""Reading and validating a whole manifest (every file, row and whole-manifest check), without embedding
anything: :func:`read_manifest` and the :class:`Manifest` it returns."""

from __future__ import annotations

import codecs
import difflib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from mmaffect.data.manifest.carve import _carve_validation, _check_fixed_split
from mmaffect.data.manifest.checks import (
    ManifestError,
    _check_label_types,
    _check_training_targets,
    _class_order,
    _resolve_task,
)
from mmaffect.data.manifest.records import (
    CANONICAL,
    TARGETS,
    _bad_bytes,
    _decode,
    _file_format,
    _read_csv,
    _read_jsonl,
    parse_columns,
    split_argument,
)
from mmaffect.data.manifest.rows import ManifestFile, ManifestRow, _parse_row
from mmaffect.errors import ConfigError, DataError


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


def read_manifest(argument: str, columns: dict[str, str] | str | None = None, encoding: str = "utf-8",
                  task: str | None = None, *, purpose: str = "train", folds: int | str | None = None,
                  default_columns: dict[str, str] | None = None, media_root: str | Path | None = None) -> Manifest:
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
        media_root: the folder media paths are relative to (default: each manifest file's folder);
            paths that resolve outside it, symlinks included, are still refused.

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
        file = ManifestFile(path=path, format=fmt, split=split, header=header,
                            media_root=Path(media_root).expanduser().resolve() if media_root is not None else None)
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
