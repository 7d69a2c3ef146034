"""A clear error when media work needs the optional mediapipe face backend and it is not installed.

Why: ``pip install mmaffect`` brings every media extractor, and the default face backend (``tflite``)
runs mediapipe's face models vendored in mmaffect. The ``mediapipe`` backend is kept for caches and
checkpoints made before it stopped being the default; mediapipe itself cannot be a dependency (its
metadata pins numpy<2), so it is installed apart with ``--no-deps``. Without this check a user who
loads such a checkpoint gets ``ModuleNotFoundError: No module named 'mediapipe'`` from inside a worker,
once per item, after the work has started.
"""

from __future__ import annotations

import importlib.util

from mmaffect.errors import ConfigError

INSTALL_MEDIAPIPE = "pip install 'mmaffect[mediapipe]' && pip install --no-deps -r requirements/extract-nodeps.txt"


def require_mediapipe(what: str) -> None:
    """Raise a one-line ConfigError naming the install when mediapipe is not installed. Only looks the
    module up (``find_spec``): no import time."""
    if importlib.util.find_spec("mediapipe") is None:
        raise ConfigError(f"{what} uses the mediapipe face backend (face_backend=mediapipe, as features made "
                          f"before the tflite default were), and mediapipe is not installed: {INSTALL_MEDIAPIPE}")


def require_face_backend(config, what: str, faces: bool = True) -> None:
    """:func:`require_mediapipe` when ``config`` (an ``ExtractConfig``) uses the mediapipe face backend,
    before any work starts; ``faces=False`` (a model without the video modality, e.g. the voice model)
    needs no face backend. ``FaceAnalyzer`` checks again where it loads mediapipe, for the paths that
    reach it without this check."""
    if faces and config.face_backend == "mediapipe":
        require_mediapipe(what)
