"""A key → arrays store on LMDB, shared by the text-embedding cache and the extraction cache.

Values are dicts of numpy arrays serialised with safetensors (no pickle), so reading a cache can never
run code. LMDB gives atomic transactions (an interrupted write loses only the uncommitted batch) and
concurrent readers with one writer at a time, which is what a resumable parallel job needs.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import lmdb
import numpy as np
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from mmaffect.errors import DataError, OutputError

_MAP_SIZE = 1 << 36  # 64 GiB of address space; LMDB files grow only as data is written


class ArrayStore:
    """Persistent mapping ``str -> dict[str, np.ndarray]``."""

    def __init__(self, path: str | Path, readonly: bool = False):
        self.path = Path(path)
        if readonly and not (self.path / "data.mdb").exists():
            raise DataError(self.path, "no feature store here (data.mdb missing)")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(self.path, f"cannot create the feature store ({exc.strerror or exc})") from exc
        try:
            self._env = lmdb.open(str(self.path), map_size=_MAP_SIZE, readonly=readonly, lock=not readonly,
                                  max_dbs=0, subdir=True)
        except lmdb.Error as exc:
            raise DataError(self.path, f"cannot open feature store ({exc})") from exc
        try:
            self._check_size()
        except BaseException:
            self._env.close()
            raise

    def _check_size(self) -> None:
        """Refuse a data file shorter than the pages its last commit uses.

        LMDB reads through a memory map: touching a page past the end of a truncated file (a copy cut
        short, a full disk during rsync) kills the process with SIGBUS, no exception, no message. The
        meta pages at the start of the file say which page is the last one in use, so the size check
        is exact and costs one stat() -- done before anything else reads the store.
        """
        data = self.path / "data.mdb"
        need = (self._env.info()["last_pgno"] + 1) * self._env.stat()["psize"]
        try:
            have = data.stat().st_size
        except OSError as exc:
            raise DataError(data, f"cannot read the feature store ({exc.strerror or exc})") from exc
        if have < need:
            raise DataError(data, f"truncated feature store: the file has {have} bytes but its last commit "
                                  f"uses {need} (an incomplete copy?); copy it again or re-extract into a new "
                                  "folder")

    def close(self) -> None:
        self._env.close()

    def __enter__(self) -> ArrayStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return self._env.stat()["entries"]

    def __contains__(self, key: str) -> bool:
        with self._env.begin() as txn:
            return txn.get(key.encode()) is not None

    def keys(self) -> Iterator[str]:
        with self._env.begin() as txn:
            for key in txn.cursor().iternext(keys=True, values=False):
                yield key.decode()

    def get(self, key: str) -> dict[str, np.ndarray] | None:
        return self.get_many([key])[0]

    def get_many(self, keys: Iterable[str]) -> list[dict[str, np.ndarray] | None]:
        out = []
        with self._env.begin(buffers=True) as txn:
            for key in keys:
                raw = txn.get(key.encode())
                if raw is None:
                    out.append(None)
                    continue
                try:
                    out.append(st_load(bytes(raw)))
                except Exception as exc:  # a damaged value must name the store and key
                    raise DataError(self.path, f"entry {key!r} is corrupt ({exc})") from exc
        return out

    def put_many(self, items: Mapping[str, Mapping[str, np.ndarray]]) -> None:
        """Write all items in one transaction: either all of them land or none.

        Raises:
            OutputError: the transaction could not be committed (disk full, quota, I/O error); the
                store keeps its previous state.
        """
        try:
            with self._env.begin(write=True) as txn:
                for key, arrays in items.items():
                    txn.put(key.encode(), st_save({k: np.ascontiguousarray(v) for k, v in arrays.items()}))
        except lmdb.Error as exc:
            raise OutputError(self.path, f"cannot write to the feature store ({exc}); nothing of this batch "
                                         "was written") from exc
