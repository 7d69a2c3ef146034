"""Clear errors for commands whose optional dependencies (pyproject extras) are not installed.

Why: ``pip install mmaffect`` gives text models and the pretrained text/analysis checkpoints, but
decoding and analysing media needs the ``extract`` extra (and its ``--no-deps`` companions, whose
metadata pins conflict). Without this check a user gets ``ModuleNotFoundError: No module named 'av'``
from deep inside the pipeline, after the work has started.
"""

from __future__ import annotations

import importlib.util

from mmaffect.errors import ConfigError

# import name -> the distribution that provides it (what to install)
_EXTRACT = {"av": "av", "librosa": "librosa", "soundfile": "soundfile", "cv2": "opencv-python-headless",
            "faster_whisper": "faster-whisper", "silero_vad": "silero-vad", "mediapipe": "mediapipe"}
_INSTALL = {"extract": "pip install 'mmaffect[extract]' && pip install --no-deps -r requirements/extract-nodeps.txt"}


def require_extract(what: str) -> None:
    """Raise a one-line ConfigError naming the missing packages when ``what`` needs the media extractors.

    Only looks the modules up (``find_spec``), so the check costs no import time."""
    missing = [dist for module, dist in _EXTRACT.items() if importlib.util.find_spec(module) is None]
    if missing:
        raise ConfigError(f"{what} needs the media extractors, which are not installed (missing: "
                          f"{', '.join(missing)}): {_INSTALL['extract']}")
