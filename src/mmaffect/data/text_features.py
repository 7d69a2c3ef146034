"""Build the text modality of a dataset from raw utterances with the cached MiniLM encoder."""

from __future__ import annotations

from collections.abc import Sequence

from mmaffect.data.dataset import Modality
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
