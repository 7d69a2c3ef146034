"""Generate test media on the fly (PyAV + numpy), so the tests need no data files and no downloads.

Faces come from ``skimage.data.astronaut()`` (a public-domain NASA portrait shipped in scikit-image);
speech from the ``espeak-ng`` command line tool when it is installed (``speech()`` returns ``None``
otherwise, and tests that need speech skip).
"""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
from pathlib import Path

import av
import numpy as np

SR = 16000
SENTENCE = "Hello world. I am very happy to see you today."
VIDEO_CODEC = "libx264" if "libx264" in av.codecs_available else "mpeg4"


def tone(seconds: float = 1.0, freq: float = 440.0, sr: int = SR, amp: float = 0.3) -> np.ndarray:
    """A sine tone, float32 mono."""
    t = np.arange(round(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def silence(seconds: float = 1.0, sr: int = SR) -> np.ndarray:
    return np.zeros(round(seconds * sr), np.float32)


def has_espeak() -> bool:
    return shutil.which("espeak-ng") is not None


def speech(text: str = SENTENCE, sr: int = SR, pad: float = 0.5) -> np.ndarray | None:
    """espeak-ng speech of ``text`` (float32 mono at ``sr``, ``pad`` s of silence each side), or None."""
    import librosa
    import soundfile as sf

    exe = shutil.which("espeak-ng")
    if exe is None:
        return None
    out = subprocess.run([exe, "-s", "150", "--stdout", text], check=True, capture_output=True).stdout
    y, sr0 = sf.read(io.BytesIO(out), dtype="float32")
    if y.ndim == 2:
        y = y.mean(axis=1)
    if sr0 != sr:
        y = librosa.resample(y, orig_sr=sr0, target_sr=sr)
    z = np.zeros(round(pad * sr), np.float32)
    return np.concatenate([z, y.astype(np.float32), z])


def face_image(width: int = 640, height: int = 480) -> np.ndarray:
    """The astronaut portrait letterboxed into ``width`` x ``height`` (uint8 RGB)."""
    import cv2
    from skimage import data

    img = data.astronaut()
    side = min(width, height)
    img = cv2.resize(img, (side, side), interpolation=cv2.INTER_AREA)
    canvas = np.full((height, width, 3), 40, np.uint8)
    x0, y0 = (width - side) // 2, (height - side) // 2
    canvas[y0 : y0 + side, x0 : x0 + side] = img
    return canvas


def noface_image(width: int = 320, height: int = 240, seed: int = 0) -> np.ndarray:
    """A colour gradient with noise: no face in it."""
    rng = np.random.default_rng(seed)
    gx = np.linspace(0, 255, width)[None, :, None]
    gy = np.linspace(0, 255, height)[:, None, None]
    img = np.concatenate(
        [
            np.broadcast_to(gx, (height, width, 1)),
            np.broadcast_to(gy, (height, width, 1)),
            np.full((height, width, 1), 128.0),
        ],
        axis=2,
    )
    img = img + rng.normal(0, 20, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_wav(path: Path, audio: np.ndarray, sr: int = SR) -> Path:
    import soundfile as sf

    sf.write(path, audio, sr, subtype="PCM_16")
    return Path(path)


def write_mp4(
    path: Path,
    image: np.ndarray | None = None,
    audio: np.ndarray | None = None,
    seconds: float = 2.0,
    fps: int = 10,
    sr: int = SR,
    faststart: bool = False,
) -> Path:
    """Write an mp4 with ``image`` (shifted by 1 px each frame, so frames differ) as H.264 video
    for ``seconds`` and/or ``audio`` (float32 mono) as AAC. ``faststart`` puts the index first,
    so a truncated copy is still partly decodable."""
    assert image is not None or audio is not None
    opts = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), mode="w", options=opts) as c:
        vs = None
        if image is not None:
            h, w = image.shape[:2]
            vs = c.add_stream(VIDEO_CODEC, rate=fps)
            vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        as_ = c.add_stream("aac", rate=sr, layout="mono") if audio is not None else None
        if vs is not None:
            for i in range(round(fps * seconds)):
                frame = np.ascontiguousarray(np.roll(image, shift=i, axis=1))
                for pkt in vs.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    c.mux(pkt)
            for pkt in vs.encode():
                c.mux(pkt)
        if as_ is not None:
            pcm = np.clip(audio * 32767, -32768, 32767).astype(np.int16)
            for s in range(0, len(pcm), 1024):
                af = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(pcm[s : s + 1024][None]), format="s16", layout="mono"
                )
                af.sample_rate = sr
                af.pts = s
                for pkt in as_.encode(af):
                    c.mux(pkt)
            for pkt in as_.encode():
                c.mux(pkt)
    return Path(path)


def face_video(
    path: Path, seconds: float = 2.0, fps: int = 10, audio: np.ndarray | None = None, **kw
) -> Path:
    """640x480 video of the astronaut face; a 440 Hz tone as audio unless ``audio`` is given."""
    audio = tone(seconds) if audio is None else audio
    return write_mp4(path, face_image(), audio, seconds=seconds, fps=fps, **kw)


def noface_video(path: Path, seconds: float = 2.0, fps: int = 10) -> Path:
    return write_mp4(path, noface_image(), tone(seconds, 220.0), seconds=seconds, fps=fps)


def video_only_mp4(path: Path, seconds: float = 2.0, fps: int = 10) -> Path:
    return write_mp4(path, noface_image(), None, seconds=seconds, fps=fps)


def audio_only_mp4(path: Path, seconds: float = 2.0) -> Path:
    return write_mp4(path, None, tone(seconds), seconds=seconds)


def truncated_copy(src: Path, dst: Path, fraction: float = 0.4) -> Path:
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[: int(len(data) * fraction)])
    return Path(dst)


def zero_byte(path: Path) -> Path:
    Path(path).write_bytes(b"")
    return Path(path)


def text_as_mp4(path: Path) -> Path:
    Path(path).write_text("this is not a video, just some text renamed to .mp4\n" * 20)
    return Path(path)


def rotated_mp4(path: Path, seconds: float = 1.0) -> Path:
    """160x120 video (white top third) whose track matrix says "display rotated 90 deg clockwise",
    as phones write portrait videos. PyAV cannot set it, so the tkhd box's matrix is patched."""
    img = np.zeros((120, 160, 3), np.uint8)
    img[:40] = 255
    write_mp4(path, img, None, seconds=seconds)
    data = bytearray(Path(path).read_bytes())
    box = data.index(b"tkhd") - 4  # version-0 tkhd: the 3x3 matrix starts 48 bytes into the box
    data[box + 48 : box + 84] = struct.pack(">9i", 0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000)
    Path(path).write_bytes(bytes(data))
    return Path(path)
