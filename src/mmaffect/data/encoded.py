"""Text vectors from a fine-tuned ``text-finetune`` checkpoint instead of the frozen MiniLM vectors.

Why: the context models (``bc-lstm``, ``dialogue-rnn``, ``turn-transformer``) read one vector per
utterance; any utterance encoder can feed them. A MiniLM fine-tuned on the task's own training rows
gives better utterance vectors than the frozen one, and the context model then adds the dialogue on
top. ``--set dataset_args.text_encoder=CKPT`` (any dataset with raw text) replaces the text
modality's vectors by the checkpoint's pooled sentence vectors (the masked mean of its last token
states, i.e. what its head reads). The frozen vectors it replaces are kept as
:attr:`~mmaffect.data.dataset.AffectDataset.pretrained_text`, for models whose point is to read the
pretrained encoder (``compm``'s speaker memory, need ``"pretrained_text"``).

No leakage: the encoder must have been trained on the same dataset's fixed split (its checkpoint
records the dataset and no cross-validation fold), so it saw the training rows and chose its epoch on
the validation rows, never the test rows. Anything else is refused. The vectors are computed once
per (checkpoint, texts) and kept under ``$MMAFFECT_CACHE/encoded``; the checkpoint's path, SHA-256,
seed and best epoch go into the dataset's ``meta`` (and so into every results file and checkpoint
trained on it).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from mmaffect.data.dataset import AffectDataset, Modality
from mmaffect.errors import ConfigError, DataError
from mmaffect.settings import cache_root

if TYPE_CHECKING:
    from mmaffect.inference import LoadedModel

log = logging.getLogger(__name__)

ENCODER_MODEL = "text-finetune"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def texts_sha256(texts: np.ndarray) -> str:
    return hashlib.sha256("\x1f".join(map(str, texts.tolist())).encode()).hexdigest()


def encoder_checkpoint(path: str | Path) -> Path:
    """The one checkpoint file behind ``path`` (a file or a run's folder holding ``model.safetensors``)."""
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / "model.safetensors"
    if not path.is_file():
        raise DataError(path, "text encoder checkpoint not found (give a text-finetune run's model.safetensors)")
    return path


def check_encoder(meta: dict, path: Path, dataset: str) -> None:
    """Refuse an encoder that is not text-finetune or that may have seen this dataset's test rows."""
    if meta.get("model") != ENCODER_MODEL:
        raise DataError(path, f"a text encoder must be a {ENCODER_MODEL} checkpoint, this is {meta.get('model')!r}")
    if meta.get("dataset") != dataset:
        raise DataError(path, f"this encoder was trained on {meta.get('dataset')!r}, not {dataset!r}; its training "
                              "rows may include this dataset's test rows")
    if meta.get("fold") is not None:
        raise DataError(path, f"this encoder was trained in cross-validation (fold {meta['fold']}): its training "
                              "rows include rows of other runs' test folds")


def encode_texts(data: AffectDataset, encoder: LoadedModel) -> Tensor:
    """(N, hidden) pooled sentence vectors of every row's text under a loaded encoder checkpoint."""
    from mmaffect.training.trainer import predict_outputs

    # the checkpoint's input check wants its own text width; the vectors themselves are not read. The
    # other modalities stay: an encoder fine-tuned on a multimodal corpus (mosi-bclstm) records them all
    width = encoder.model.spec.dims["t"]
    data = replace(data, modalities={**data.modalities, "t": Modality(torch.zeros(len(data), width))})
    rows = np.arange(len(data))
    # batches of 64 rows of similar length: a third less CPU than the training runs' 256 (less padding)
    outputs = predict_outputs(encoder.model, encoder.prepare(data, str(encoder.path)), rows, 64, keys=("features",))
    return outputs["features"].contiguous()


def load_encoder(path: Path, dataset: str, sha256: str | None = None) -> LoadedModel:
    """The checked encoder checkpoint at ``path``; with ``sha256``, refuse a file that changed since."""
    from mmaffect.inference import load_model
    from mmaffect.training.checkpoint import load_tensors

    _, meta = load_tensors(path)
    check_encoder(meta, path, dataset)
    if sha256 is not None and file_sha256(path) != sha256:
        raise DataError(path, "this text encoder is not the one the model was trained with (SHA-256 differs)")
    return load_model(path)


def store_path(checkpoint_sha: str, data: AffectDataset) -> Path:
    """Where the vectors of ``data``'s texts under the checkpoint with this SHA-256 are kept."""
    return cache_root() / "encoded" / f"{checkpoint_sha[:20]}_{texts_sha256(data.text)[:20]}.safetensors"


def with_encoded_text(data: AffectDataset, dataset: str, checkpoint: str | Path) -> AffectDataset:
    """``data`` with its text vectors replaced by those of a fine-tuned ``text-finetune`` checkpoint.

    Args:
        data: a dataset with raw text (as read from ``dataset``).
        dataset: the name it was read by (must be the name the encoder was trained on).
        checkpoint: the encoder's ``model.safetensors`` or its run folder.
    """
    from mmaffect.inference import load_model
    from mmaffect.training.checkpoint import load_tensors, save_tensors

    if data.text is None:
        raise ConfigError(f"{dataset} keeps no raw text, so dataset_args.text_encoder cannot apply")
    path = encoder_checkpoint(checkpoint)
    _, meta = load_tensors(path)
    check_encoder(meta, path, dataset)
    sha = file_sha256(path)
    store = store_path(sha, data)
    if store.is_file():
        vectors = load_tensors(store)[0]["vectors"]
    else:
        log.info("encoding %d texts with %s", len(data), path)
        vectors = encode_texts(data, load_model(path))
        store.parent.mkdir(parents=True, exist_ok=True)
        save_tensors(store, {"vectors": vectors}, {"checkpoint": str(path), "sha256": sha, "rows": len(data)})
    if vectors.shape[0] != len(data):
        raise DataError(store, f"holds {vectors.shape[0]} vectors for {len(data)} texts; delete it")
    encoder = {"path": str(path.resolve()), "sha256": sha, "dataset": meta["dataset"], "seed": meta.get("seed"),
               "best_epoch": meta.get("best_epoch"), "model_args": meta.get("model_args", {})}
    modalities = {**data.modalities, "t": Modality(vectors.float())}
    # the frozen vectors stay beside the fine-tuned ones: compm's speaker memory reads them (need "pretrained_text")
    pretrained = data.pretrained_text if data.pretrained_text is not None else (
        data.modalities["t"].vector.float() if "t" in data.modalities else None)
    features = {**data.meta, "text_encoder": f"{ENCODER_MODEL}@sha256:{sha[:16]}",
                "text_vector": "masked mean of the fine-tuned encoder's last token states",
                "text_encoder_checkpoint": encoder}
    return replace(data, modalities=modalities, meta=features, pretrained_text=pretrained)
