"""The analyses a job runs: a recording through :class:`mmaffect.analysis.Analyzer`, a transcript
through the text model's :class:`mmaffect.predictor.Predictor`. Both give the same result shape (the
``mmaffect analyze`` JSON), so the page draws them the same way; transcripts are placed on a turn
axis instead of seconds.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from mmaffect.errors import ConfigError, DataError

Progress = Callable[[str, float], None]  # (stage, fraction done 0..1)

# "Name: what they said" (a name of at most 4 words, no sentence punctuation) starts a dialogue turn
_SPEAKER = re.compile(r"^\s*([^\s:.!?][^:.!?]{0,40}?)\s*:\s+(.+)$")


def parse_transcript(text: str) -> list[tuple[str | None, str]]:
    """A pasted dialogue as ``(speaker or None, utterance)`` turns, one per non-empty line."""
    turns = []
    for line in text.splitlines():
        if not line.strip():
            continue
        match = _SPEAKER.match(line)
        if match and len(match.group(1).split()) <= 4:
            turns.append((match.group(1).strip(), match.group(2).strip()))
        else:
            turns.append((None, line.strip()))
    return turns


class Engine:
    """The loaded models of one worker (loading takes seconds; a worker keeps them for its jobs)."""

    def __init__(self, model: Path | None, text_model: Path | None, asr_model: str | None = None):
        from mmaffect.analysis import Analyzer
        from mmaffect.predictor import load

        self.analyzer = Analyzer(model, asr_model=asr_model) if model is not None else None
        self.text = load(text_model) if text_model is not None else None
        if self.text is not None:
            if not self.text.classes:
                raise DataError(text_model, "the text model must classify (it has no classes)")
            if self.text.recipe.media or self.text.modalities != ["t"]:
                raise DataError(text_model, f"--text-model must read text only; this one reads "
                                            f"{'+'.join(self.text.modalities)}")

    def media(self, path: Path, name: str, progress: Progress) -> dict:
        if self.analyzer is None:
            raise ConfigError("this server analyses transcripts only (it was started without --model)")
        progress("transcribing and analysing the recording", 0.3)
        result = self.analyzer(path)
        result["video"] = name  # the stored file's random name means nothing to the person
        result["input"] = "media"
        result["axis"] = "seconds"
        return result

    def transcript(self, text: str, progress: Progress) -> dict:
        if self.text is None:
            raise ConfigError("this server analyses recordings only (it was started without --text-model)")
        turns = parse_transcript(text)
        if not turns:
            raise DataError(None, "the transcript is empty")
        progress(f"classifying {len(turns)} turn(s)", 0.3)
        records = self.text.predict(text=[utterance for _, utterance in turns])
        segments = []
        for i, ((speaker, utterance), rec) in enumerate(zip(turns, records, strict=True)):
            label = rec["label"]
            segments.append({"id": f"turn{i:03d}", "start": i, "end": i + 1, "speaker": speaker, "text": utterance,
                             "label": label, "confidence": rec["probabilities"][label],
                             "probabilities": rec["probabilities"],
                             # one modality carries the whole decision; a relevance head says so itself
                             "contributions": rec.get("relevance", {"t": 1.0}), "warnings": []})
        return {"input": "text", "axis": "turns", "checkpoint": self.text.source, "n_models": len(self.text.models),
                "classes": self.text.classes, "modalities": ["t"],
                "contributions_from": "relevance" if "relevance" in records[0] else "text only",
                "segments": segments, "failed": []}
