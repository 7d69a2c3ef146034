"""Out-of-core features: memory-mapped shards read as the one dataset type, with bounded memory.

Why: a MOSEI-size corpus with frame-level sequences (audio descriptors at 50 Hz, token vectors) does
not fit in RAM, but the trainer only ever needs one batch at a time. A sharded feature folder keeps
every array on disk in ``.npy`` files; :func:`load_shards` returns an ordinary
:class:`~mmaffect.data.dataset.AffectDataset` whose modality vectors and sequences are
:class:`ShardedRows` / :class:`ShardedSequences`: array-likes that gather the requested rows from
read-only memory maps into a fresh tensor (``data.batch(index)`` works unchanged, so does the
trainer). Memory stays bounded because the maps are dropped after ``release_bytes`` have been read
through them: the pages a map touched count towards the process's resident memory until it is
unmapped, and afterwards they live only in the kernel's page cache, which the kernel reclaims.
Labels, ids, splits and the per-row lengths (a few bytes per row) stay in RAM.

Folder layout (:class:`ShardWriter` writes it)::

    DIR/shards.json                    format, rows, rows per shard, modalities {key: {dim, seq_dim}},
                                       class names, default task
    DIR/rows.npz                       ids, split, label | score, per modality lengths
    DIR/shard_00000/{m}_vector.npy     (n, dim) float16 utterance vectors of the shard's rows
    DIR/shard_00000/{m}_steps.npy      (sum of lengths, seq_dim) float16: the rows' steps, packed

What does not stream: anything that reads every row at once -- standardisation statistics of
:mod:`mmaffect.data.standardize`, ``runs.data_fingerprint`` -- so ``mmaffect train`` does not take a
sharded folder yet; write features already standardised and call the trainer
(:func:`mmaffect.training.trainer.fit`) as ``benchmarks/stream_epoch.py`` does.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from mmaffect.data.dataset import AffectDataset, Modality
from mmaffect.errors import DataError
from mmaffect.io import write_json

FORMAT = "mmaffect feature shards"
META_FILE = "shards.json"
ROWS_FILE = "rows.npz"
RELEASE_BYTES = 256 * 1024 ** 2  # bytes read through the maps before they are dropped


class ShardMaps:
    """Opens shard files as read-only memory maps on demand; drops them all every ``release_bytes`` read."""

    def __init__(self, folder: Path, release_bytes: int = RELEASE_BYTES):
        self.folder = folder
        self.release_bytes = release_bytes
        self.maps: dict[tuple[int, str], np.ndarray] = {}
        self.read = 0
        self.releases = 0

    def get(self, shard: int, name: str) -> np.ndarray:
        key = (shard, name)
        if key not in self.maps:
            path = self.folder / f"shard_{shard:05d}" / f"{name}.npy"
            try:
                self.maps[key] = np.load(path, mmap_mode="r")
            except (OSError, ValueError) as exc:
                raise DataError(path, f"unreadable feature shard ({exc})") from exc
        return self.maps[key]

    def count(self, nbytes: int) -> None:
        """Account for ``nbytes`` copied out of the maps; unmap everything once over the budget."""
        self.read += nbytes
        if self.read >= self.release_bytes:
            self.maps.clear()  # gathers copy, so nothing else holds a view: this unmaps
            self.read = 0
            self.releases += 1


def _rows(index) -> np.ndarray:
    if isinstance(index, Tensor):
        index = index.numpy()
    return np.atleast_1d(np.asarray(index, dtype=np.int64))


class ShardedRows:
    """``(N, dim)`` rows spread over shards; ``rows[index]`` gathers them into a float16 tensor."""

    def __init__(self, maps: ShardMaps, name: str, starts: np.ndarray, dim: int):
        self.maps, self.name, self.starts, self.dim = maps, name, starts, dim  # starts: first row of each shard + N

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.starts[-1]), self.dim

    ndim = 2
    dtype = torch.float16

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> Tensor:
        rows = _rows(index)
        out = np.empty((len(rows), self.dim), dtype=np.float16)
        shard = np.searchsorted(self.starts, rows, side="right") - 1
        for s in np.unique(shard):
            where = shard == s
            out[where] = self.maps.get(int(s), self.name)[rows[where] - self.starts[s]]
        self.maps.count(out.nbytes)
        return torch.from_numpy(out)


class ShardedSequences:
    """``(N, L, seq_dim)`` padded sequences stored packed over shards; ``seqs[index, :width]`` gathers
    the rows, zero-padded to ``width`` (default: the longest row), into a float16 tensor."""

    def __init__(self, maps: ShardMaps, name: str, starts: np.ndarray, lengths: np.ndarray, dim: int):
        self.maps, self.name, self.starts, self.dim = maps, name, starts, dim
        self.lengths = lengths
        self.offsets = np.concatenate([[0], np.cumsum(lengths)])  # step offset of each row, over all shards

    @property
    def shape(self) -> tuple[int, int, int]:
        return len(self.lengths), int(self.lengths.max(initial=1)), self.dim

    ndim = 3
    dtype = torch.float16

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, key) -> Tensor:
        index, width = (key[0], key[1]) if isinstance(key, tuple) else (key, slice(None))
        if not isinstance(width, slice) or width.start not in (None, 0) or width.step not in (None, 1):
            raise IndexError("sharded sequences take [rows] or [rows, :width]")
        rows = _rows(index)
        lengths = self.lengths[rows]
        width = int(lengths.max(initial=1)) if width.stop is None else int(width.stop)
        out = np.zeros((len(rows), width, self.dim), dtype=np.float16)
        shard = np.searchsorted(self.starts, rows, side="right") - 1
        for i, (row, s, n) in enumerate(zip(rows, shard, np.minimum(lengths, width), strict=True)):
            first = self.offsets[row] - self.offsets[self.starts[s]]
            out[i, :n] = self.maps.get(int(s), self.name)[first:first + n]
        self.maps.count(out.nbytes)
        return torch.from_numpy(out)


class ShardWriter:
    """Writes a sharded feature folder chunk by chunk (memory: one chunk).

    ``add(vectors={m: (n, dim)}, sequences={m: [(len_i, seq_dim), ...]}, ids=..., split=..., label=...)``
    appends n rows as one shard; :meth:`close` writes the row table and ``shards.json``.
    """

    def __init__(self, folder: str | Path, modalities: dict[str, tuple[int, int | None]],
                 class_names: list[str] | None = None, default_task: str = "classification"):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.modalities = modalities
        self.class_names = class_names
        self.default_task = default_task
        self.shard_rows: list[int] = []
        self.columns: dict[str, list[np.ndarray]] = {}

    def add(self, vectors: dict[str, np.ndarray], sequences: dict[str, Sequence[np.ndarray]], ids: Sequence[str],
            split: Sequence[str], label: Sequence[int] | None = None, score: Sequence[float] | None = None) -> None:
        n = len(ids)
        folder = self.folder / f"shard_{len(self.shard_rows):05d}"
        folder.mkdir(exist_ok=True)
        for m, (dim, seq_dim) in self.modalities.items():
            vector = np.asarray(vectors[m], dtype=np.float16)
            if vector.shape != (n, dim):
                raise ValueError(f"modality {m}: vectors must be ({n}, {dim}), got {vector.shape}")
            np.save(folder / f"{m}_vector.npy", vector)
            if seq_dim is not None:
                steps = sequences[m]
                if len(steps) != n or any(s.ndim != 2 or s.shape[1] != seq_dim for s in steps):
                    raise ValueError(f"modality {m}: {n} sequences of (len, {seq_dim}) expected")
                np.save(folder / f"{m}_steps.npy", np.concatenate(steps).astype(np.float16, copy=False))
                self.columns.setdefault(f"{m}_lengths", []).append(np.asarray([len(s) for s in steps], np.int64))
        self.columns.setdefault("ids", []).append(np.asarray(ids, dtype=str))
        self.columns.setdefault("split", []).append(np.asarray(split, dtype=str))
        if label is not None:
            self.columns.setdefault("label", []).append(np.asarray(label, dtype=np.int64))
        if score is not None:
            self.columns.setdefault("score", []).append(np.asarray(score, dtype=np.float32))
        self.shard_rows.append(n)

    def close(self) -> Path:
        np.savez(self.folder / ROWS_FILE, **{k: np.concatenate(v) for k, v in self.columns.items()})
        write_json(self.folder / META_FILE, {
            "format": FORMAT, "rows": int(sum(self.shard_rows)), "shard_rows": self.shard_rows,
            "modalities": {m: {"dim": d, "seq_dim": s} for m, (d, s) in self.modalities.items()},
            "class_names": self.class_names, "default_task": self.default_task})
        return self.folder


def load_shards(path: str | Path, sequences: bool = True, release_bytes: int = RELEASE_BYTES) -> AffectDataset:
    """A sharded feature folder as an :class:`AffectDataset` whose features stay on disk."""
    folder = Path(path).expanduser()
    try:
        meta = json.loads((folder / META_FILE).read_text())
        table = dict(np.load(folder / ROWS_FILE))
    except (OSError, ValueError) as exc:
        raise DataError(folder, f"not a feature shard folder ({exc})") from exc
    if meta.get("format") != FORMAT:
        raise DataError(folder / META_FILE, f"not a feature shard folder (format {meta.get('format')!r})")
    starts = np.concatenate([[0], np.cumsum(meta["shard_rows"])]).astype(np.int64)
    maps = ShardMaps(folder, release_bytes)
    modalities = {}
    for m, spec in meta["modalities"].items():
        vector = ShardedRows(maps, f"{m}_vector", starts, spec["dim"])
        if sequences and spec["seq_dim"] is not None:
            lengths = table[f"{m}_lengths"]
            modalities[m] = Modality(vector, ShardedSequences(maps, f"{m}_steps", starts, lengths, spec["seq_dim"]),
                                     torch.from_numpy(lengths))
        else:
            modalities[m] = Modality(vector)
    label = torch.from_numpy(table["label"]) if "label" in table else None
    return AffectDataset(
        name=f"shards:{folder.name}", ids=table["ids"], modalities=modalities,
        score=torch.from_numpy(table["score"]) if "score" in table else None, label=label,
        class_names=meta.get("class_names"), split=table["split"], default_task=meta.get("default_task"),
        meta={"source": str(folder), "format": FORMAT, "release_bytes": release_bytes})
