"""Dataset readers registered by name, and the one entry point :func:`load_dataset`.

A name is either a registered dataset (``mosi-bclstm``) whose files live under the data root
(``$MMAFFECT_DATA``), or ``prefix:argument`` for readers of user files (``mmsa:feats.pkl``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mmaffect.data.dataset import AffectDataset
from mmaffect.errors import ConfigError, DataError
from mmaffect.settings import data_root

Loader = Callable[..., AffectDataset]


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    loader: Loader
    files: tuple[str, ...]
    size: int
    description: str

    def missing_files(self, root: Path) -> list[Path]:
        return [root / f for f in self.files if not (root / f).is_file()]


DATASETS: dict[str, DatasetInfo] = {}
PREFIX_READERS: dict[str, tuple[Loader, str]] = {}


def register_dataset(name: str, *, files: tuple[str, ...], size: int, description: str):
    """Register ``loader(root: Path, sequences: bool) -> AffectDataset`` under ``name``."""

    def decorate(loader: Loader) -> Loader:
        if name in DATASETS:
            raise ValueError(f"dataset {name!r} registered twice")
        DATASETS[name] = DatasetInfo(name, loader, files, size, description)
        return loader

    return decorate


def register_prefix(prefix: str, *, description: str):
    """Register ``loader(argument: str, sequences: bool, **options) -> AffectDataset`` for ``prefix:argument``."""

    def decorate(loader: Loader) -> Loader:
        PREFIX_READERS[prefix] = (loader, description)
        return loader

    return decorate


def load_dataset(name: str, root: str | Path | None = None, sequences: bool = False, **options) -> AffectDataset:
    """Load a dataset by registered name or ``prefix:argument``.

    Args:
        name: e.g. ``mosi-bclstm``, ``iemocap6-text``, ``mmsa:/path/feats.pkl``.
        root: data root; defaults to :func:`mmaffect.settings.data_root`.
        sequences: also load per-step sequences where the source has them (costs memory).
        options: reader options of prefix readers (e.g. ``columns`` for ``manifest:``); registered
            datasets take none. ``text_encoder=CKPT`` (any dataset with raw text) replaces the text
            vectors by a fine-tuned ``text-finetune`` checkpoint's (:mod:`mmaffect.data.encoded`),
            ``text_encoder=minilm`` by the packaged frozen MiniLM's.
    """
    text_encoder = options.pop("text_encoder", None)
    if text_encoder == "minilm":
        from mmaffect.data.text_features import with_minilm_text

        return with_minilm_text(load_dataset(name, root, sequences, **options), name, sequences)
    if text_encoder is not None:
        from mmaffect.data.encoded import with_encoded_text

        return with_encoded_text(load_dataset(name, root, sequences, **options), name, text_encoder)
    _import_readers()
    prefix, sep, argument = name.partition(":")
    if sep and prefix in PREFIX_READERS:
        return PREFIX_READERS[prefix][0](argument, sequences=sequences, **options)
    if options:
        raise ConfigError(f"dataset {name!r} takes no options (got {', '.join(sorted(options))})")
    if name not in DATASETS:
        known = ", ".join(sorted(DATASETS) + [f"{p}:..." for p in sorted(PREFIX_READERS)])
        raise ConfigError(f"unknown dataset {name!r}; known: {known}")
    info = DATASETS[name]
    root = Path(root) if root is not None else data_root()
    missing = info.missing_files(root)
    if missing:
        raise DataError(missing[0], "file not found (set MMAFFECT_DATA to the folder holding the datasets)")
    dataset = info.loader(root, sequences=sequences)
    dataset.meta.setdefault("files", [str(root / f) for f in info.files])
    return dataset


def dataset_table(root: str | Path | None = None) -> list[dict]:
    """One row per registered dataset and prefix reader, for ``mmaffect datasets``."""
    _import_readers()
    root = Path(root) if root is not None else data_root()
    rows = [{"name": i.name, "size": i.size, "found": not i.missing_files(root), "description": i.description}
            for i in DATASETS.values()]
    rows += [{"name": f"{p}:PATH", "size": None, "found": None, "description": d}
             for p, (_, d) in PREFIX_READERS.items()]
    return rows


def _import_readers() -> None:
    """Readers register themselves on import; import them on first use, not at package import."""
    from mmaffect.data import cache, erc_text, manifest, mmsa, mosi, sentiment_classes  # noqa: F401
