"""Build the text modality of a dataset from raw utterances with the cached MiniLM encoder."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from mmaffect.data.dataset import AffectDataset, Modality
from mmaffect.errors import ConfigError
from mmaffect.features.text import TextEncoder, stack_text_features


def text_modality(texts: Sequence[str], sequences: bool, encoder: TextEncoder | None = None) -> tuple[Modality, dict]:
    """The text modality (sentence vectors, and token sequences if asked) plus its feature recipe."""
    encoder = encoder or TextEncoder()
    encoded = encoder.encode_cached(list(texts), progress=len(texts) > 1000)  # report long first-time encodes
    vectors, padded, lengths = stack_text_features(encoded, sequences)
    recipe = {"text_encoder": encoder.version, "text_vector": "masked mean of token states, L2-normalised",
              "text_sequence": "last-layer token states incl. [CLS]/[SEP], float16"}
    modality = Modality(vectors) if padded is None else Modality(vectors, padded, lengths)
    return modality, recipe


def with_minilm_text(data: AffectDataset, dataset: str, sequences: bool) -> AffectDataset:
    """``data`` with its text vectors replaced by the packaged MiniLM's sentence vectors of its raw text.

    Why: a corpus may ship text features from an extractor trained on its own training rows (MOSI's
    bc-LSTM text CNN): on any validation carve-out of those rows they are nearly separable, so
    validation cannot choose epochs or models. The frozen MiniLM never saw the corpus, so its vectors
    look the same on validation as on test (``--set dataset_args.text_encoder=minilm``).
    """
    if data.text is None:
        raise ConfigError(f"{dataset} keeps no raw text, so dataset_args.text_encoder cannot apply")
    modality, recipe = text_modality(data.text.tolist(), sequences)
    own = data.meta.get("features", "the dataset's own text vectors")
    replaced = {"text_replaced": own} if "t" in data.modalities else {}
    return replace(data, modalities={**data.modalities, "t": modality}, meta={**data.meta, **recipe, **replaced})
