"""Checking an uploaded file by decoding it, never by its name or declared type.

A file is accepted when FFmpeg (PyAV) opens it, finds an audio or video stream, decodes a first frame
of it, and reads packets through to the end that cover most of the duration the container claims; a
truncated recording fails that last test (its index promises more than its data holds). The client's
file name is only displayed: it must be a plain name (no folders, no ``..``), and files are stored
under random names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# A stream whose packets end before this share of its declared duration is reported as truncated.
MIN_COVERED = 0.9
MIN_SECONDS = 0.2  # shorter "recordings" (a still image decodes as one 0.04 s frame) are refused


class UploadError(Exception):
    """An upload the server refuses: ``status`` is the HTTP code, ``message`` a sentence for a person."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class MediaInfo:
    duration: float
    audio: bool
    video: bool
    container: str


def check_name(name: str | None) -> str:
    """The client's file name, refused when it is empty or looks like a path (it is shown, never used)."""
    if not name or not name.strip():
        raise UploadError(400, "the upload has no file name")
    if "/" in name or "\\" in name or name in (".", "..") or ".." in name.split(".") or "\x00" in name:
        raise UploadError(400, f"file name {name!r} looks like a path; send a plain file name")
    if len(name) > 255:
        raise UploadError(400, "file name longer than 255 characters")
    return name


def probe(path: Path, max_seconds: float) -> MediaInfo:
    """Decode ``path`` enough to trust it; raise :class:`UploadError` (4xx) with the reason otherwise."""
    import av

    if path.stat().st_size == 0:
        raise UploadError(400, "the file is empty (0 bytes)")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise UploadError(415, f"not a readable audio or video file, or a truncated one ({_reason(exc)})") from None
    with container:
        streams = [s for s in container.streams if s.type in ("audio", "video")]
        if not streams:
            raise UploadError(415, "the file has no audio or video stream")
        declared = container.duration / 1e6 if container.duration else None
        if declared is not None and declared > max_seconds:
            raise UploadError(413, f"the recording is {declared:.0f} s long; this server takes at most "
                                   f"{max_seconds:.0f} s")
        decoded: set[int] = set()
        ends = {s.index: 0.0 for s in streams}
        try:
            for packet in container.demux(streams):
                if packet.pts is not None and packet.time_base is not None:
                    stop = float((packet.pts + (packet.duration or 0)) * packet.time_base)
                    ends[packet.stream.index] = max(ends[packet.stream.index], stop)
                if packet.stream.index not in decoded and packet.size:
                    if packet.decode():
                        decoded.add(packet.stream.index)
        except (av.error.FFmpegError, OSError) as exc:
            raise UploadError(422, f"the file is corrupt or truncated ({_reason(exc)})") from None
        if not decoded:
            raise UploadError(422, "no audio or video frame could be decoded (corrupt or truncated file)")
        for stream in streams:
            length = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else declared
            if length and ends[stream.index] < MIN_COVERED * length:
                raise UploadError(422, f"the file is truncated: its {stream.type} data ends at "
                                       f"{ends[stream.index]:.1f} s of the {length:.1f} s it declares")
        duration = declared if declared is not None else max(ends.values())
        if duration < MIN_SECONDS:
            raise UploadError(415, f"the file holds {duration:.2f} s of media (a still image?); send a recording")
        if duration > max_seconds:
            raise UploadError(413, f"the recording is {duration:.0f} s long; this server takes at most "
                                   f"{max_seconds:.0f} s")
        kinds = {s.type for s in streams if s.index in decoded}
        return MediaInfo(duration=duration, audio="audio" in kinds, video="video" in kinds,
                         container=container.format.name)


def _reason(exc: Exception) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.split(":")[-1].strip() or type(exc).__name__
