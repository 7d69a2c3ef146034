"""Decode an audio/video file into the two arrays every extractor works on.

One demuxing pass with PyAV (bundled FFmpeg, so no system ffmpeg is needed) gives

* the audio as float32 mono at 16 kHz (the rate silero-vad, Whisper and the acoustic features use), and
* the video as RGB frames sampled at a low, fixed rate (affect changes slowly; 2 fps keeps a
  one-hour video at ~7200 frames), optionally downscaled.

``start``/``end`` cut a time window out of a long file (one utterance of a dialogue video) without
decoding the rest: we seek to the key frame before ``start`` and stop once both streams pass ``end``.
All times in the returned :class:`Media` are relative to the window start, so ``frame_times`` and
audio sample indices (and ASR word times computed on ``Media.audio``) share one clock.

Every problem with the input raises :class:`mmaffect.errors.MediaError` (``"<path>: <reason>"``);
bad arguments raise ``ValueError``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from mmaffect.errors import MediaError

__all__ = ["Media", "decode", "has_audio_stream", "has_video_stream"]

# Timestamps come from integer pts in the stream's time base; 1 ms absorbs their rounding so a
# frame stamped 0.49999 s still counts as "at" the 0.5 s sample time.
_TIME_EPS = 1e-3
# Give up on a stream after this many consecutive decode errors (a corrupt tail would otherwise
# spin through thousands of broken packets).
_MAX_CONSECUTIVE_ERRORS = 20
# Magic bytes of containers we can recognise: a file starting with one of these that FFmpeg cannot
# open is "corrupt or truncated", not "not a media file" -- the reason a user needs to fix it.
_MEDIA_MAGIC = (b"RIFF", b"OggS", b"fLaC", b"ID3", b"\x1aE\xdf\xa3", b"FLV", b"\xff\xf1", b"\xff\xfb")


@dataclass
class Media:
    """Decoded audio and sampled video frames of one file (or of a window of it).

    ``audio`` is ``None`` when the file has no audio stream (or none of it decoded);
    ``frames`` is ``None`` when it has no video stream (or none of it decoded), and then
    ``frame_times`` is empty. Times are seconds from ``start``, the window start in the file.
    """

    path: str
    duration: float  # seconds: the window length (container/longest-stream duration without a window)
    audio: np.ndarray | None  # float32 mono (S,) at sample_rate
    sample_rate: int
    frames: np.ndarray | None  # uint8 RGB (T, H, W, 3), sampled at fps
    frame_times: np.ndarray  # float32 (T,), seconds from `start`, strictly increasing
    start: float = 0.0  # where the window begins in the file (seconds)
    # fraction of decoded audio samples that were NaN/Inf (float PCM can hold them); they are set to 0
    # in ``audio`` so the extractors run, and this says the features of that audio are not trustworthy
    audio_nonfinite: float = 0.0

    @property
    def has_audio(self) -> bool:
        return self.audio is not None

    @property
    def has_video(self) -> bool:
        return self.frames is not None


def _ff_reason(err: BaseException) -> str:
    """FFmpeg's own wording ("Invalid data found when processing input"), without the path repeated."""
    reason = getattr(err, "strerror", None)
    return str(reason) if reason else str(err)


def _open_failure(path: Path, err: BaseException) -> str:
    with open(path, "rb") as fh:
        head = fh.read(16)
    looks_like_media = head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide") or head.startswith(
        _MEDIA_MAGIC
    )
    if looks_like_media:
        return f"corrupt or truncated media file, cannot be opened ({_ff_reason(err)})"
    return f"not a media file or unsupported format ({_ff_reason(err)})"


def _is_cover_art(stream: av.stream.Stream) -> bool:
    """An mp3/m4a album cover shows up as a one-frame 'video' stream; it is not video."""
    try:
        return bool(int(stream.disposition) & int(av.stream.Disposition.attached_pic))
    except (AttributeError, TypeError, ValueError):
        return False


def _stream_seconds(stream: av.stream.Stream) -> float | None:
    if stream.duration is None or stream.time_base is None:
        return None
    return float(stream.duration * stream.time_base)


def _output_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    if max_side is None or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _validate(
    fps: float, sample_rate: int, max_side: int | None, start: float | None, end: float | None
) -> None:
    if not (isinstance(fps, int | float) and math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    if not (isinstance(sample_rate, int) and sample_rate > 0):
        raise ValueError(f"sample_rate must be a positive int, got {sample_rate!r}")
    if max_side is not None and not (isinstance(max_side, int) and max_side >= 2):
        raise ValueError(f"max_side must be None or an int >= 2, got {max_side!r}")
    if start is not None and not (math.isfinite(start) and start >= 0):
        raise ValueError(f"start must be >= 0 seconds, got {start!r}")
    if end is not None and not (math.isfinite(end) and end > (start or 0.0)):
        raise ValueError(f"end must be after start, got start={start!r} end={end!r}")


def has_audio_stream(path: str | Path) -> bool:
    """Whether FFmpeg can open ``path`` and it has an audio stream."""
    try:
        with av.open(str(path)) as container:
            return bool(container.streams.audio)
    except (av.error.FFmpegError, OSError):
        return False


def has_video_stream(path: str | Path, unreadable: bool = False) -> bool:
    """Whether ``path`` has a video stream; ``unreadable`` is the answer for a file FFmpeg cannot open."""
    try:
        with av.open(str(path)) as container:
            return bool(container.streams.video)
    except (av.error.FFmpegError, OSError):
        return unreadable


def decode(
    path: str | Path,
    fps: float = 2.0,
    sample_rate: int = 16000,
    max_side: int | None = 640,
    start: float | None = None,
    end: float | None = None,
    video: bool = True,
) -> Media:
    """Decode ``path`` into 16 kHz mono float32 audio and RGB frames sampled at ``fps``.

    ``video=False`` decodes the audio only (``frames`` is None): what segmenting a long recording
    needs, without holding hours of frames in memory.

    Frame sampling is by timestamp: for each sample time ``k / fps`` (from the window start) the
    first decoded frame at or after it is taken, and no frame is taken twice, so a video slower
    than ``fps`` yields its own frames and ``frame_times`` holds the real frame times. Frames are
    downscaled (area filter) so the longest side is at most ``max_side``, and turned upright when
    the stream carries a rotation (phone videos).

    A truncated or partly corrupt file returns whatever decoded (with a ``UserWarning``); if
    nothing decodes, or the file is missing, empty, not media, or has neither audio nor video,
    :class:`MediaError` is raised.
    """
    _validate(fps, sample_rate, max_side, start, end)
    p = Path(path)
    if not p.exists():
        raise MediaError(p, "file not found")
    if not p.is_file():
        raise MediaError(p, "not a regular file")
    if p.stat().st_size == 0:
        raise MediaError(p, "empty file (0 bytes)")
    try:
        container = av.open(str(p), mode="r", metadata_errors="ignore")
    except av.error.FFmpegError as err:
        raise MediaError(p, _open_failure(p, err)) from err
    with container:
        return _decode_open(p, container, float(fps), sample_rate, max_side, start, end, video)


class _AudioCollector:
    """Resamples decoded audio frames to float32 mono and keeps the part inside [t0, t1)."""

    def __init__(self, sample_rate: int, t0: float, t1: float):
        self.sample_rate, self.t0, self.t1 = sample_rate, t0, t1
        # planar float at the target rate, source channel layout: the channel mean is taken
        # here, like librosa's to_mono (FFmpeg's own stereo->mono downmix scales by 1/sqrt(2))
        self.resampler = av.AudioResampler(format="fltp", rate=sample_rate)
        self.chunks: list[np.ndarray] = []
        self.n_samples = 0
        self.t_first: float | None = None  # time of the first kept input frame
        self.done = False
        self.errors_in_a_row = 0
        self.nonfinite = 0.0  # fraction of the returned samples that were NaN/Inf before repair

    def _append(self, resampled: list) -> None:
        for r in resampled:
            arr = r.to_ndarray()
            mono = arr.mean(axis=0) if arr.ndim == 2 else arr
            self.chunks.append(mono)
            self.n_samples += mono.size

    def add(self, frame: av.AudioFrame) -> bool:
        """Take one decoded frame; False once the window end is reached."""
        ft = frame.time
        if ft is None:  # no timestamp: assume it follows what we have
            ft = (self.t_first if self.t_first is not None else self.t0) + self.n_samples / self.sample_rate
        if ft >= self.t1:
            self.done = True
            return False
        if ft + frame.samples / frame.sample_rate < self.t0 - _TIME_EPS:
            return True  # wholly before the window (after a backward seek)
        if self.t_first is None:
            self.t_first = ft
        self._append(self.resampler.resample(frame))
        return True

    def flush(self) -> None:
        if self.t_first is not None:
            self._append(self.resampler.resample(None))  # the resampler's delay line

    def result(self, stop: float) -> np.ndarray | None:
        """Samples from t0 to ``stop`` (sample 0 = t0; zero-padded if the audio starts later)."""
        if not self.chunks or self.t_first is None:
            return None
        y = np.concatenate(self.chunks).astype(np.float32, copy=False)
        offset = round((self.t0 - self.t_first) * self.sample_rate)
        if offset > 0:
            y = y[offset:]
        elif offset < 0:
            y = np.concatenate([np.zeros(-offset, np.float32), y])
        if math.isfinite(stop):
            y = y[: max(0, round((stop - self.t0) * self.sample_rate))]
        if not y.size:
            return None
        bad = y.size - int(np.count_nonzero(np.isfinite(y)))
        if not bad:
            return np.ascontiguousarray(y)
        self.nonfinite = bad / y.size
        return np.ascontiguousarray(np.nan_to_num(y, nan=0.0, posinf=1.0, neginf=-1.0))


class _FrameSampler:
    """Keeps the first frame at or after each sample time t0 + k / fps, as RGB, resized and upright."""

    def __init__(self, fps: float, max_side: int | None, t0: float, t1: float, stream: av.video.VideoStream):
        self.fps, self.max_side, self.t0, self.t1 = fps, max_side, t0, t1
        stream.thread_type = "AUTO"  # frame + slice threads: H.264 decoding dominates the cost
        rate = stream.average_rate
        self.step = 1.0 / float(rate) if rate else 0.04  # nominal frame duration
        self.frames: list[np.ndarray] = []
        self.times: list[float] = []
        self.next_k = 0
        self.size: tuple[int, int] | None = None
        self.quarter_turns = 0  # counter-clockwise, from the display matrix
        self.last_t: float | None = None
        self.done = False
        self.errors_in_a_row = 0

    def add(self, frame: av.VideoFrame) -> bool:
        """Take one decoded frame; False once the window end is reached."""
        ft = frame.time
        if ft is None:  # no timestamp: assume the nominal frame rate
            ft = self.t0 if self.last_t is None else self.last_t + self.step
        self.last_t = ft
        if ft >= self.t1:
            self.done = True
            return False
        rel = ft - self.t0
        if rel < -_TIME_EPS or rel < self.next_k / self.fps - _TIME_EPS:
            return True
        if self.size is None:  # fixed for the whole clip, so the frames stack even if the stream changes size
            self.size = _output_size(frame.width, frame.height, self.max_side)
            self.quarter_turns = round(getattr(frame, "rotation", 0) / 90) % 4
        rgb = frame.reformat(
            width=self.size[0], height=self.size[1], format="rgb24", interpolation="AREA"
        ).to_ndarray()
        if self.quarter_turns:
            rgb = np.rot90(rgb, k=self.quarter_turns)
        self.frames.append(np.ascontiguousarray(rgb))
        self.times.append(max(rel, 0.0))
        self.next_k = math.floor(rel * self.fps + _TIME_EPS) + 1  # next sample time strictly after ft
        return True


def _decode_open(
    p: Path,
    container: av.container.InputContainer,
    fps: float,
    sample_rate: int,
    max_side: int | None,
    start: float | None,
    end: float | None,
    want_video: bool = True,
) -> Media:
    audio_streams = list(container.streams.audio)
    video_streams = [s for s in container.streams.video if not _is_cover_art(s)] if want_video else []
    if not audio_streams and not video_streams:
        raise MediaError(p, "no audio or video stream" if want_video else "no audio stream")
    a_st = audio_streams[0] if audio_streams else None
    v_st = video_streams[0] if video_streams else None

    declared: float | None = None
    if container.duration:
        declared = container.duration / av.time_base
    else:
        lengths = [d for d in (_stream_seconds(s) for s in (a_st, v_st) if s is not None) if d]
        declared = max(lengths) if lengths else None

    t0 = float(start or 0.0)
    t1 = float(end) if end is not None else math.inf
    if declared is not None and t0 >= declared:
        raise MediaError(p, f"window start {t0:.3f}s is at or after the end of the media ({declared:.3f}s)")
    if t0 > 0:
        try:  # lands on the key frame at or before t0 (all streams); data before t0 is dropped below
            container.seek(int(t0 * av.time_base))
        except av.error.FFmpegError:
            pass  # unseekable input: decode from the beginning and skip to t0

    streams = [s for s in (a_st, v_st) if s is not None]
    audio_sink = _AudioCollector(sample_rate, t0, t1) if a_st is not None else None
    sampler = _FrameSampler(fps, max_side, t0, t1, v_st) if v_st is not None else None
    sinks = {s.index: sink for s, sink in ((a_st, audio_sink), (v_st, sampler)) if s is not None}
    errors: list[str] = []
    try:
        for packet in container.demux(streams):
            sink = sinks[packet.stream.index]
            if sink.done:
                if all(x.done for x in (audio_sink, sampler) if x is not None):
                    break  # both streams are past the window end: stop reading the file
                continue
            try:
                decoded = packet.decode()
                sink.errors_in_a_row = 0
            except av.error.FFmpegError as err:
                errors.append(_ff_reason(err))
                sink.errors_in_a_row += 1
                sink.done = sink.errors_in_a_row >= _MAX_CONSECUTIVE_ERRORS
                continue
            for frame in decoded:
                if not sink.add(frame):
                    break
    except av.error.FFmpegError as err:  # demuxer error: typically a truncated file
        errors.append(_ff_reason(err))

    audio: np.ndarray | None = None
    if audio_sink is not None:
        try:
            audio_sink.flush()
        except av.error.FFmpegError as err:
            errors.append(_ff_reason(err))
        stop = min(t1, declared if declared is not None else math.inf)  # drops AAC padding past the end
        audio = audio_sink.result(stop)
    video = np.stack(sampler.frames) if sampler is not None and sampler.frames else None
    frame_times = np.asarray(sampler.times if sampler is not None else [], dtype=np.float32)
    nominal_step = sampler.step if sampler is not None else 0.0

    if audio is None and video is None:
        if errors:
            raise MediaError(p, f"corrupt or truncated media file, nothing could be decoded ({errors[0]})")
        raise MediaError(p, f"no audio or video could be decoded in the window [{t0:.3f}s, {t1:.3f}s)")

    extent = max(
        audio.size / sample_rate if audio is not None else 0.0,
        float(frame_times[-1]) + nominal_step if video is not None else 0.0,
    )
    if declared is None:
        duration = extent
    else:
        duration = min(t1, declared) - t0
    missing = [
        name
        for name, st, arr in (("audio", a_st, audio), ("video", v_st, video))
        if st is not None and arr is None
    ]
    if errors or missing:
        # A cut-off file still declares its full duration; report what actually decoded.
        if errors and extent < duration - 0.5:
            duration = extent
        parts = [f"{len(errors)} decode error(s), first: {errors[0]}"] if errors else []
        parts += [f"no {' or '.join(missing)} in [{t0:.3f}s, {t1:.3f}s)"] if missing else []
        warnings.warn(f"{p}: partly decoded ({'; '.join(parts)})", UserWarning, stacklevel=3)
    return Media(
        path=str(p),
        duration=float(duration),
        audio=audio,
        sample_rate=sample_rate,
        frames=video,
        frame_times=frame_times,
        start=t0,
        audio_nonfinite=audio_sink.nonfinite if audio is not None else 0.0,
    )
