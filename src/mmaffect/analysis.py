"""``mmaffect analyze MEDIA``: utterance segments, per-segment emotion and per-modality contributions.

Pipeline: decode the audio track once, find speech with silero VAD and (unless ASR is off) transcribe
it once with Whisper (word timestamps); cut the speech into utterance windows and give each window
the words that fall in it; extract each window with the same extractors and the same settings the
model was trained with, and read the features back with the reader options it was trained with
(which audio representation, from its recipe); predict with the model, or with the average of
several (a training folder's fold models); attribute each prediction to the modalities.

Audio-only files (a voice recording: no video stream) work the same way; with a voice-only model
(``mmaffect train-analysis-model --voice``) every contribution is the voice's. ASR (``asr``):
``"auto"`` transcribes only when the model reads text, ``"always"`` also for a voice-only model (the
words are shown and help place the windows), ``"never"`` not at all -- the text of an acted corpus
carries no emotion, and the packaged English model writes nonsense on other languages.

Contributions come from the model's own relevance weights when it has them (``late-fusion``
outputs ``relevance``); otherwise from modality ablation: the drop in the predicted class's
probability when a modality's features are replaced by the training mean (zero after the model's
standardisation), normalised to sum to one over the modalities.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from mmaffect.errors import ConfigError, DataError
from mmaffect.extras import require_face_backend
from mmaffect.features.media import has_video_stream
from mmaffect.inference import LoadedModel
from mmaffect.predictor import Predictor, audio_reader_options, load

if TYPE_CHECKING:
    from mmaffect.features.asr import BackgroundTranscript, Word
    from mmaffect.features.media import Media

MAX_SEGMENT = 12.0  # seconds; longer speech runs are cut into equal parts
MERGE_GAP = 0.5  # seconds of silence below which two speech runs are one utterance
MIN_SEGMENT = 0.4
# seconds of context added around each speech window (see pad_windows): chosen on 32 RAVDESS validation-actor
# files from 0, 0.25, 0.5, 1, 2 (benchmarks/speech_emotion.py --analyze): 34.4 % correct at 0, 59.4 % at 1
PAD = 1.0
ASR_MODES = ("auto", "always", "never")


@dataclass
class Window:
    start: float
    end: float
    text: str


def speech_windows(audio: np.ndarray, sample_rate: int, words: list, duration: float) -> list[Window]:
    """Utterance windows from VAD, merged across short pauses and cut when long, with their words.

    Speech the VAD misses but ASR transcribed is covered too; with no speech at all the whole file
    is one window (its face and voice can still be analysed)."""
    from mmaffect.features.asr import speech_segments

    runs = [(s, e) for s, e in speech_segments(audio, sample_rate)] if audio is not None else []
    runs += [(w.start, w.end) for w in words if not any(s <= (w.start + w.end) / 2 <= e for s, e in runs)]
    runs.sort()
    merged: list[list[float]] = []
    for start, end in runs:
        if merged and start - merged[-1][1] < MERGE_GAP:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    windows = []
    for start, end in merged:
        if end - start < MIN_SEGMENT:
            continue
        parts = int(np.ceil((end - start) / MAX_SEGMENT))
        edges = np.linspace(start, end, parts + 1)
        for a, b in zip(edges[:-1], edges[1:], strict=True):
            text = " ".join(w.text.strip() for w in words if a <= (w.start + w.end) / 2 < b)
            windows.append(Window(float(a), float(min(b, duration)), text))
    return windows or [Window(0.0, float(duration), " ".join(w.text.strip() for w in words))]


def pad_windows(windows: list[Window], pad: float, duration: float) -> list[Window]:
    """Each window widened by ``pad`` seconds on both sides, within the file and never past the middle
    of the gap to its neighbour.

    Why: training utterances (one file per utterance in every corpus here) carry some silence around the
    speech, and pooled features (the mean and spread of Whisper-encoder frames) depend on it; a window
    cut tight at voice activity is a different input."""
    out = []
    for i, w in enumerate(windows):
        start, end = max(0.0, w.start - pad), min(float(duration), w.end + pad)
        if i > 0:
            start = max(start, (windows[i - 1].end + w.start) / 2)
        if i + 1 < len(windows):
            end = min(end, (w.end + windows[i + 1].start) / 2)
        out.append(Window(start, end, w.text))
    return out


def _predict(models: list[LoadedModel], data) -> tuple[np.ndarray, np.ndarray, str]:
    """Averaged class probabilities (N, C) and contributions (N, M), and how contributions were got."""
    probs, contributions = [], []
    source = "relevance"
    for loaded in models:
        prepared = loaded.prepare(data, "analysis")
        batch = prepared.batch(torch.arange(len(prepared)))
        with torch.inference_mode():
            out = loaded.model(batch)
            p = torch.softmax(out["logits"], -1)
            probs.append(p.numpy())
            if "relevance" in out:
                contributions.append(out["relevance"].numpy())
                continue
            source = "ablation"
            top = p.argmax(1, keepdim=True)
            drops = []
            for m in prepared.modalities:
                ablated = dict(batch, **{m: torch.zeros_like(batch[m])})
                if f"{m}_seq" in batch:
                    ablated[f"{m}_seq"] = torch.zeros_like(batch[f"{m}_seq"])
                q = torch.softmax(loaded.model(ablated)["logits"], -1)
                drops.append((p.gather(1, top) - q.gather(1, top)).clamp(min=0).squeeze(1))
            d = torch.stack(drops, 1)
            contributions.append((d / d.sum(1, keepdim=True).clamp(min=1e-8)).numpy())
    return np.mean(probs, 0), np.mean(contributions, 0), source


class Analyzer:
    """Loads the model(s), the speech recogniser and the extractors once; call it on media files.

    Segments are extracted with the checkpoint's feature recipe (:mod:`mmaffect.recipe`): the
    extraction settings of the features it was trained on, the sequence step rate and the audio
    reader options of its ``cache:`` reader."""

    def __init__(self, checkpoint: str | Path, asr_model: str | None = None, threads: int = 1, asr: str = "auto",
                 pad: float = PAD):
        from mmaffect.features.asr import SpeechRecognizer

        if asr not in ASR_MODES:
            raise ConfigError(f"asr must be one of {', '.join(ASR_MODES)}; got {asr!r}")
        self.checkpoint = Path(checkpoint)
        self.predictor: Predictor = load(checkpoint)
        if not self.predictor.classes:
            raise DataError(checkpoint, "analyze needs a classification model (it has no classes)")
        self.models = self.predictor.models
        self.reader = audio_reader_options(self.predictor.recipe.dataset_args, checkpoint)
        self.config = self.predictor.recipe.extract_config(asr="never")  # ASR is done here, once per file
        # before Whisper loads, not once per file
        require_face_backend(self.config, str(checkpoint), faces="v" in self.predictor.modalities)
        self.pad = pad
        self.threads = threads  # the one --threads setting: Whisper and the face/audio extractors use it
        self.classes = self.predictor.classes
        self.modalities = list(self.predictor.modalities)
        self.asr = asr if asr != "auto" else ("always" if "t" in self.modalities else "never")
        self.recognizer = SpeechRecognizer(asr_model or self.config.asr_model, threads=threads) \
            if self.asr == "always" else None

    def __call__(self, video: str | Path, heard: BackgroundTranscript | None = None) -> dict:
        """The analysis of one file. ``heard``: a transcription of the same file started before this
        analyzer loaded (``mmaffect analyze`` overlaps Whisper with loading torch and the models); it is
        used when it ran the recogniser and sample rate this model's recipe asks for, else ignored."""
        started = time.perf_counter()
        video = Path(video)
        early = heard.wait() if heard is not None and self._same_listening(heard) else None
        media, words = early if early is not None else self._listen(video)
        duration = media.duration if media is not None else _duration(video)
        windows = speech_windows(media.audio if media is not None else None, self.config.sample_rate, words, duration)
        windows = pad_windows(windows, self.pad, duration)
        items = [(f"segment{i:03d}", video, w.text, w.start, w.end) for i, w in enumerate(windows)]
        data, failed, records = self.predictor.media_features(items, config=self.config, threads=self.threads)
        if data is None:
            raise DataError(video, f"no segment could be analysed ({next(iter(failed.values()))})")
        probs, contributions, source = _predict(self.models, data)
        window_of = {item[0]: w for item, w in zip(items, windows, strict=True)}
        segments = []
        for row, seg_id in enumerate(data.ids):
            window, record = window_of[seg_id], records[seg_id]
            flags = record.get("flags") or {}
            k = int(probs[row].argmax())
            segments.append({
                "id": seg_id, "start": round(window.start, 3), "end": round(window.end, 3), "text": window.text,
                "label": self.classes[k], "confidence": float(probs[row, k]),
                "probabilities": {c: float(p) for c, p in zip(self.classes, probs[row], strict=True)},
                "contributions": {m: float(c) for m, c in zip(self.modalities, contributions[row], strict=True)},
                "face_rate": flags.get("face_rate"),
                "audio_nonfinite": flags.get("audio_nonfinite"),
                "warnings": _warnings(record, self.modalities),
            })
        recipe = self.predictor.recipe
        return {"video": str(video), "duration": float(duration), "checkpoint": str(self.checkpoint),
                "n_models": len(self.models), "classes": self.classes, "modalities": self.modalities,
                "contributions_from": source, "asr": self.asr, "video_stream": has_video_stream(video),
                "extraction": {"fps": self.config.fps, "sample_rate": self.config.sample_rate,
                               "step_fps": recipe.step_fps, "trained_on": recipe.dataset, "reader": self.reader},
                "segments": segments,
                "failed": [{"id": i, "start": window_of[i].start, "end": window_of[i].end, "reason": r}
                           for i, r in failed.items()],
                "seconds": time.perf_counter() - started}

    def _same_listening(self, heard: BackgroundTranscript) -> bool:
        return self.recognizer is not None and heard.model_name == self.recognizer.model_name \
            and heard.sample_rate == self.config.sample_rate

    def _listen(self, video: Path) -> tuple[Media | None, list[Word]]:
        """The file's audio at the recipe's rate and, when this analyzer transcribes, its words."""
        from mmaffect.features.asr import listen

        return listen(video, self.recognizer, self.config.sample_rate)


def _warnings(record: dict, modalities: list[str]) -> list[str]:
    """The extractor's warnings of a segment that concern the model's inputs (an empty transcript or a
    missing video track is no news for a voice-only model); non-finite audio samples always among
    them (their audio features were computed on zeros in their place and are not trustworthy)."""
    irrelevant = ([] if "t" in modalities else ["empty transcript"]) + ([] if "v" in modalities else
                                                                       ["no video track", "no face"])
    warnings = [w for w in record.get("warnings") or [] if not any(w.startswith(x) for x in irrelevant)]
    nonfinite = (record.get("flags") or {}).get("audio_nonfinite")
    if nonfinite and not any("NaN" in w or "non-finite" in w for w in warnings):
        warnings.append(f"audio has NaN/Inf samples ({100 * nonfinite:.3g} % of them, set to 0)")
    return warnings


def _duration(path: Path) -> float:
    from mmaffect.features.media import decode

    return decode(path, fps=1.0, max_side=32).duration


def format_table(result: dict) -> str:
    mods = result["modalities"]
    lines = [f"{result['video']}: {result['duration']:.1f} s, {len(result['segments'])} segment(s); model "
             f"{result['checkpoint']} ({result['n_models']} run(s)); "
             f"contributions from {result['contributions_from']}; "
             f"ASR {'on' if result.get('asr') == 'always' else 'off'}"
             + ("" if result.get("video_stream", True) else "; audio only (no video stream)"),
             f"{'start':>7} {'end':>7}  {'label':<8}{'conf':>6}  " + " ".join(f"{m:>5}" for m in mods)
             + f"  {'face':>5}  text"]
    for s in result["segments"]:
        face = "" if s["face_rate"] is None else f"{s['face_rate']:.2f}"
        lines.append(f"{s['start']:7.2f} {s['end']:7.2f}  {s['label']:<8}{s['confidence']:6.2f}  "
                     + " ".join(f"{s['contributions'][m]:5.2f}" for m in mods) + f"  {face:>5}  {s['text'][:60]}")
        lines += [f"{'':17}warning: {w}" for w in s.get("warnings", [])]
    for f in result["failed"]:
        lines.append(f"{f['start']:7.2f} {f['end']:7.2f}  not analysed: {f['reason']}")
    lines.append(f"{result['seconds']:.2f} s")
    return "\n".join(lines)


def plot_timeline(result: dict, path: str | Path) -> None:
    """Two panels over time: class probabilities per segment, and modality contributions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mmaffect.io import atomic_write

    classes, mods = result["classes"], result["modalities"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 5), sharex=True, height_ratios=[3, 1.4])
    colours = plt.get_cmap("tab10")
    for s in result["segments"]:
        width = s["end"] - s["start"]
        base = 0.0
        for j, c in enumerate(classes):
            p = s["probabilities"][c]
            top.bar(s["start"], p, width=width, bottom=base, align="edge", color=colours(j % 10), edgecolor="white")
            base += p
        top.text(s["start"] + width / 2, 1.02, s["label"], ha="center", va="bottom", fontsize=8)
        base = 0.0
        for j, m in enumerate(mods):
            c = s["contributions"][m]
            bottom.bar(s["start"], c, width=width, bottom=base, align="edge", color=colours((j + 7) % 10),
                       edgecolor="white")
            base += c
    top.set_ylim(0, 1.12)
    top.set_ylabel("class probability")
    top.legend(handles=[plt.Rectangle((0, 0), 1, 1, color=colours(j % 10)) for j in range(len(classes))],
               labels=classes, ncol=len(classes), fontsize=7, loc="lower center", bbox_to_anchor=(0.5, -0.32))
    bottom.set_ylabel("contribution")
    bottom.set_xlabel("time (s)")
    bottom.set_ylim(0, 1)
    names = {"t": "text", "a": "audio", "v": "video"}
    bottom.legend(handles=[plt.Rectangle((0, 0), 1, 1, color=colours((j + 7) % 10)) for j in range(len(mods))],
                  labels=[names.get(m, m) for m in mods], ncol=len(mods), fontsize=7, loc="upper right")
    top.set_title(f"{Path(result['video']).name}: emotion per segment", fontsize=10)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
