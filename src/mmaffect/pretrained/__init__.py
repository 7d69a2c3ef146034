"""Pretrained models: named checkpoints with a model card, checked before they are loaded.

A pretrained model is a folder (the same layout on disk, in the package and in a hub repository)::

    card.json                         what it is: data, split, seeds, metrics beside the published
                                      numbers, extractor versions, and the sha256 of every weight file
    README.md                         the same card for people
    seed{S}[_fold{F}]/model.safetensors   its members (a training run's models; they are averaged)

Names resolve as ``pretrained:NAME`` (the folder built by ``mmaffect pretrained build NAME`` under
``$MMAFFECT_CACHE/pretrained/NAME``, or, for the default analysis model, the copy shipped inside the
package) and ``hf:OWNER/REPO[@REVISION]`` (downloaded with ``huggingface_hub`` when it is installed).
Every load recomputes the sha256 of each listed file and refuses a mismatch: a changed or truncated
weight file is an error naming the file, never a silently different model.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from mmaffect.errors import ConfigError, DataError
from mmaffect.settings import cache_root

log = logging.getLogger(__name__)

CARD_FILE = "card.json"
CARD_FORMAT = "mmaffect-pretrained"
PREFIX = "pretrained:"
HUB_PREFIX = "hf:"


@dataclass(frozen=True)
class Entry:
    """One named checkpoint of the zoo: what it does, what it reads, and where it comes from."""

    name: str
    summary: str
    reads: str  # what a user gives it
    shipped: bool = False  # inside the package (works right after pip install)


CATALOG: dict[str, Entry] = {e.name: e for e in (
    Entry("analysis", "emotion per utterance of a video (IEMOCAP 8 classes): text + audio + video late fusion "
          "with per-modality relevance; the default model of `mmaffect analyze` and `mmaffect serve`",
          "a video or audio file (transcribed with the packaged Whisper tiny.en)", shipped=True),
    Entry("voice-ravdess", "emotion from the voice alone (RAVDESS 8 classes, acted English speech): audio-mlp on "
          "the pooled Whisper tiny.en encoder frames; the model of `mmaffect analyze` for audio without video",
          "an audio file (or a video's sound)", shipped=True),
    Entry("text-iemocap6", "emotion of an utterance's text (IEMOCAP 6 classes, COSMIC split): text-mlp on "
          "all-MiniLM-L6-v2 sentence vectors; the transcript model of `mmaffect serve`", "text", shipped=True),
    Entry("text-meld7", "emotion of an utterance's text (MELD 7 classes, official split): text-mlp on "
          "all-MiniLM-L6-v2 sentence vectors", "text"),
    Entry("sentiment-mosi", "sentiment score in [-3, 3] (CMU-MOSI): ef-mlp on the bc-LSTM utterance features",
          "CMU-MOSI's bc-LSTM feature vectors only (they cannot be extracted from a new video)"),
    Entry("sentiment-mosi-text", "sentiment score on CMU-MOSI's scale (-3 to 3) of an utterance's text: the packaged "
          "all-MiniLM-L6-v2 fine-tuned end to end on the MOSI training transcripts (text-finetune)", "text"),
)}


def shipped_dir() -> Path:
    """The package's folder of shipped checkpoints (package data)."""
    return Path(str(resources.files("mmaffect.pretrained"))) / "files"


def built_dir(name: str) -> Path:
    """Where ``mmaffect pretrained build NAME`` writes a model that is not shipped."""
    return cache_root() / "pretrained" / name


def location(name: str) -> Path:
    """The folder of the named model: a built copy wins over a shipped one (a rebuild is newer)."""
    if name not in CATALOG:
        raise ConfigError(f"unknown pretrained model {name!r}; known: {', '.join(CATALOG)} "
                          "(`mmaffect models --pretrained`)")
    built = built_dir(name)
    if (built / CARD_FILE).is_file():
        return built
    shipped = shipped_dir() / name
    if CATALOG[name].shipped and (shipped / CARD_FILE).is_file():
        return shipped
    raise DataError(built, f"pretrained model {name!r} is not built here; build it with "
                           f"`mmaffect pretrained build {name}` (needs the data in $MMAFFECT_DATA)")


def trained_or_shipped(trained: Path, name: str) -> Path:
    """``trained`` (a model the user trained, e.g. with ``mmaffect train-analysis-model``) when it exists,
    else the named model's built or shipped copy when there is one, else ``trained`` (so the caller's
    "train it first" message names it)."""
    if trained.exists():
        return trained
    try:
        return location(name)
    except DataError:
        return trained


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_card(folder: str | Path) -> dict:
    folder = Path(folder)
    path = folder / CARD_FILE
    try:
        card = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(path, "no model card here (not a pretrained model folder)") from None
    except (OSError, ValueError) as exc:
        raise DataError(path, f"unreadable model card ({exc})") from None
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT or not isinstance(card.get("files"), dict):
        raise DataError(path, f"not a {CARD_FORMAT} model card (no format/files record)")
    return card


def verify(folder: str | Path) -> dict:
    """Check every file the card lists against its sha256 (and that no weight file is unlisted); return
    the card. Raises :class:`DataError` naming the first file that differs."""
    folder = Path(folder)
    card = read_card(folder)
    if not card["files"]:
        raise DataError(folder / CARD_FILE, "the model card lists no weight files")
    for rel, expected in card["files"].items():
        # checked on the name, not the resolved path: a hub snapshot's files are symlinks into its blob store
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise DataError(folder / CARD_FILE, f"lists a file outside its folder: {rel!r}")
        path = folder / rel
        if not path.is_file():
            raise DataError(path, "missing: the model card lists it (incomplete download or copy)")
        got = sha256(path)
        if got != expected["sha256"]:
            raise DataError(path, f"sha256 mismatch: the card says {expected['sha256'][:16]}..., the file has "
                                  f"{got[:16]}...; the file was changed or corrupted, refusing to load it "
                                  f"(re-download it, or rebuild with `mmaffect pretrained build {card.get('name')}`)")
    unlisted = sorted(str(p.relative_to(folder)) for p in folder.rglob("*.safetensors")
                      if str(p.relative_to(folder)) not in card["files"])
    if unlisted:
        raise DataError(folder / unlisted[0], "a weight file the model card does not list; refusing to "
                                              "average an unchecked model into the prediction")
    return card


def hub_download(repo: str) -> Path:
    """The local snapshot of a hub repository (``OWNER/REPO[@REVISION]``), downloaded when needed.

    With ``HF_HUB_OFFLINE=1`` (the CLI's default) only the local hub cache is used."""
    repo_id, _, revision = repo.partition("@")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ConfigError(f"{HUB_PREFIX}{repo}: a hub repository is OWNER/NAME (optionally @REVISION)")
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
    except ImportError:
        raise ConfigError(f"{HUB_PREFIX}{repo}: loading from the hub needs huggingface_hub "
                          "(pip install huggingface_hub)") from None
    try:
        folder = snapshot_download(repo_id, revision=revision or None)
    except LocalEntryNotFoundError as exc:
        raise DataError(f"{HUB_PREFIX}{repo}", f"not in the local hub cache and the hub cannot be reached "
                                               f"(offline? HF_HUB_OFFLINE=1 is set by the CLI; unset it to "
                                               f"download): {str(exc).splitlines()[0]}") from None
    except (HfHubHTTPError, OSError, ValueError) as exc:
        raise DataError(f"{HUB_PREFIX}{repo}", f"hub download failed: {str(exc).splitlines()[0]}") from None
    return Path(folder)


def resolve(checkpoint: str | Path) -> Path:
    """The local path behind ``checkpoint``: ``pretrained:NAME`` and ``hf:REPO`` are looked up; a folder
    with a model card is verified; anything else is returned as it is."""
    text = str(checkpoint)
    if text.startswith(PREFIX):
        folder = location(text[len(PREFIX):])
    elif text.startswith(HUB_PREFIX):
        folder = hub_download(text[len(HUB_PREFIX):])
        if not (folder / CARD_FILE).is_file():
            raise DataError(f"{text}", f"the repository has no {CARD_FILE}: not an mmaffect pretrained model")
    else:
        folder = Path(checkpoint)
        if not (folder.is_dir() and (folder / CARD_FILE).is_file()):
            return folder
    verify(folder)
    return folder


def available() -> list[dict]:
    """One row per catalogue entry: name, summary, what it reads, and where it is (or how to build it)."""
    rows = []
    for entry in CATALOG.values():
        try:
            folder: Path | None = location(entry.name)
        except DataError:
            folder = None
        card = read_card(folder) if folder is not None else {}
        rows.append({"name": entry.name, "summary": entry.summary, "reads": entry.reads, "shipped": entry.shipped,
                     "path": None if folder is None else str(folder), "headline": card.get("headline")})
    return rows
