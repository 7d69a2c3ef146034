"""Whole-manifest checks: the error listing every problem, class order, mixed label types, the task the
columns imply, and targets a model cannot learn (classes unseen in training, too rare for the folds)."""

from __future__ import annotations

import re
from collections import Counter

from mmaffect.data.manifest.rows import ManifestRow
from mmaffect.errors import DataError

TASK_KINDS = ("sentiment", "regression", "classification", "binary", "multilabel")
# Most problem lines shown in an error message; ManifestError.problems keeps all of them.
MAX_LISTED = 200


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
