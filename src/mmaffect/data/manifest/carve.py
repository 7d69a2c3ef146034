"""A fixed split's validation rows: a split must have train and test rows; when it has no valid rows,
a fixed share of the training dialogues (or speakers, or rows) becomes the validation split."""

from __future__ import annotations

import warnings
from collections import Counter

import numpy as np

from mmaffect.data.manifest.records import SPLIT_ORDER
from mmaffect.data.manifest.rows import ManifestRow

# A fixed split without valid rows: this share of the training dialogues (else speakers, else rows) becomes
# the validation split, chosen with this seed, so every run and every re-run carves the same rows.
CARVE_FRACTION = 0.1
CARVE_SEED = 0


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
