"""mmaffect: multimodal affective computing (sentiment, emotion) from text, audio and video on a CPU.

``mmaffect.load(checkpoint)`` returns a :class:`mmaffect.predictor.Predictor` (a checkpoint file, or a
``mmaffect train`` output folder whose models are averaged). torch and the models are imported on the
first call, so ``import mmaffect`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from mmaffect.predictor import Predictor

__version__ = "0.1.0"
__all__ = ["__version__", "load"]


def load(checkpoint: str | Path) -> Predictor:
    """A predictor for ``checkpoint``: ``.predict(text=..., media=...)``, ``.predict_dataset(...)``,
    ``.evaluate(...)`` (see :mod:`mmaffect.predictor`)."""
    from mmaffect.predictor import load as _load

    return _load(checkpoint)
