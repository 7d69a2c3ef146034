"""Feature extractors. The raw-media ones: decoding (``media``), acoustic features (``audio``),
facial features (``face``) and speech recognition / voice activity (``asr``).

Each submodule imports its heavy dependencies (PyAV, OpenCV, ai-edge-litert,
faster-whisper, ...) itself, so ``import mmaffect.features`` stays cheap.
"""
