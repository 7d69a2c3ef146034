"""Out-of-core features: sharded feature files read as the one dataset type, with bounded memory.

Why: a MOSEI-size corpus with frame-level sequences (audio descriptors at 50 Hz, token vectors) does
not fit in RAM, but the trainer only ever needs one batch at a time. A sharded feature folder keeps
every array on disk in ``.npy`` files; :func:`load_shards` returns an ordinary
:class:`~mmaffect.data.dataset.AffectDataset` whose modality vectors and sequences are
:class:`ShardedRows` / :class:`ShardedSequences`: array-likes that read the requested rows with
positional reads (``os.preadv`` straight into the batch buffer), so ``data.batch(index)`` works
unchanged, and so does the trainer. The process holds one batch; the kernel's page cache (which it
reclaims under pressure, and which is not the process's memory) keeps hot shards fast.

Why not memory maps, the usual answer: measured here, they do not bound memory under random-order
batches. A page fault on a file mapping maps the whole (large) page-cache folio around the row, so
one batch of 64 rows over 6 arrays mapped ~400 MB, and an epoch over 200k utterances peaked at
6.9 GB resident even with every map dropped after each 256 MB read. Positional reads copy exactly the
bytes of the rows.
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
import os
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
_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


class ShardFiles:
    """Open shard files (one descriptor each, opened on first use) and where their data start."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.files: dict[tuple[int, str], tuple[int, int]] = {}  # (shard, name) -> (fd, data offset)
        self.bytes_read = 0

    def get(self, shard: int, name: str) -> tuple[int, int]:
        key = (shard, name)
        if key not in self.files:
            path = self.folder / f"shard_{shard:05d}" / f"{name}.npy"
            try:
                with open(path, "rb") as fh:
                    reader = _HEADER_READERS.get(np.lib.format.read_magic(fh))
                    if reader is None:
                        raise ValueError("unknown .npy version")
                    _, fortran, dtype = reader(fh)
                    offset = fh.tell()
                if fortran or dtype != np.float16:
                    raise ValueError("expected a C-ordered float16 array")
                self.files[key] = (os.open(path, os.O_RDONLY), offset)
            except (OSError, ValueError) as exc:
                raise DataError(path, f"unreadable feature shard ({exc})") from exc
        return self.files[key]

    def read(self, shard: int, name: str, into: np.ndarray, first: int) -> None:
        """Fill ``into`` (C-contiguous float16 rows) from row ``first`` of the shard file on."""
        if not into.size:
            return
        fd, offset = self.get(shard, name)
        got = os.preadv(fd, [memoryview(into).cast("B")], offset + first * into.shape[-1] * into.itemsize)
        if got != into.nbytes:
            raise DataError(self.folder / f"shard_{shard:05d}" / f"{name}.npy", "truncated feature shard")
        self.bytes_read += got

    def close(self) -> None:
        for fd, _ in self.files.values():
            os.close(fd)
        self.files.clear()

    def __del__(self) -> None:
        self.close()


def _rows(index) -> np.ndarray:
    if isinstance(index, Tensor):
        index = index.numpy()
    return np.atleast_1d(np.asarray(index, dtype=np.int64))


class ShardedRows:
    """``(N, dim)`` rows spread over shards; ``rows[index]`` reads them into a float16 tensor."""

    def __init__(self, files: ShardFiles, name: str, starts: np.ndarray, dim: int):
        self.files, self.name, self.starts, self.dim = files, name, starts, dim  # starts: first row of each shard + N

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
        for i, (row, s) in enumerate(zip(rows, shard, strict=True)):
            self.files.read(int(s), self.name, out[i:i + 1], int(row - self.starts[s]))
        return torch.from_numpy(out)


class ShardedSequences:
    """``(N, L, seq_dim)`` padded sequences stored packed over shards; ``seqs[index, :width]`` reads
    the rows, zero-padded to ``width`` (default: the longest row), into a float16 tensor."""

    def __init__(self, files: ShardFiles, name: str, starts: np.ndarray, lengths: np.ndarray, dim: int):
        self.files, self.name, self.starts, self.dim = files, name, starts, dim
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
            first = int(self.offsets[row] - self.offsets[self.starts[s]])
            self.files.read(int(s), self.name, out[i, :n], first)
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


def load_shards(path: str | Path, sequences: bool = True) -> AffectDataset:
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
    files = ShardFiles(folder)
    modalities = {}
    for m, spec in meta["modalities"].items():
        vector = ShardedRows(files, f"{m}_vector", starts, spec["dim"])
        if sequences and spec["seq_dim"] is not None:
            lengths = table[f"{m}_lengths"]
            modalities[m] = Modality(vector, ShardedSequences(files, f"{m}_steps", starts, lengths, spec["seq_dim"]),
                                     torch.from_numpy(lengths))
        else:
            modalities[m] = Modality(vector)
    label = torch.from_numpy(table["label"]) if "label" in table else None
    return AffectDataset(
        name=f"shards:{folder.name}", ids=table["ids"], modalities=modalities,
        score=torch.from_numpy(table["score"]) if "score" in table else None, label=label,
        class_names=meta.get("class_names"), split=table["split"], default_task=meta.get("default_task"),
        meta={"source": str(folder), "format": FORMAT})
