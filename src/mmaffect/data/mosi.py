"""CMU-MOSI with the bc-LSTM utterance features (text 100-d, audio 73-d, video 100-d).

Split: bc-LSTM's 62/31-video split (train 1447 / test 752). Validation = 10 whole training videos,
``np.random.RandomState(0).permutation(sorted(train_videos))[:10]`` (train 1209 / valid 238), the
carve-out other toolkits use too, so numbers compare 1:1.

Caveat: the bc-LSTM feature extractors were trained on all 62 training videos, so validation
scores are optimistic (~98 % accuracy) on ANY carve-out. Select on validation loss, never on test.
The CMU standard folds leak with these features (see the data README) and are not offered.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from mmaffect.data.dataset import AffectDataset, Modality
from mmaffect.data.registry import register_dataset
from mmaffect.errors import DataError

FEATURES = "mosi_bclstm/mosi_bclstm_features.npz"
TRANSCRIPTS = "mosi_bclstm/mosi_bclstm_transcripts.csv"
VALID_VIDEOS = 10


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    keys = ("text", "audio", "video", "label", "label_binary", "video_id", "utterance_id", "segment", "split")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise DataError(path, f"not a readable .npz file ({exc})") from exc
    # np.load returns a bare array for .npy content, which has none of the named arrays below
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise DataError(path, f"holds a single .npy array (shape {loaded.shape}), not an .npz archive of "
                              f"named arrays ({', '.join(keys)})")
    try:
        with loaded as npz:
            missing = [k for k in keys if k not in npz.files]
            if missing:
                raise DataError(path, f"missing arrays {', '.join(missing)}")
            return {k: npz[k] for k in keys}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise DataError(path, f"not a readable .npz file ({exc})") from exc


def _read_transcripts(path: Path, ids: np.ndarray) -> np.ndarray | None:
    """The transcript of every row, in the order of ``ids``; None when the file is absent.

    Why optional: the features alone are the benchmark; the raw text only serves models with a
    fine-tunable text encoder (token batches), so a copy of the data without it still loads."""
    if not path.is_file():
        return None
    import pandas as pd  # only when the transcripts are there: reading the features needs no pandas

    try:
        frame = pd.read_csv(path, usecols=["utterance_id", "text"], dtype=str, keep_default_na=False)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise DataError(path, f"not a readable transcript CSV with utterance_id and text columns ({exc})") from exc
    text = dict(zip(frame["utterance_id"], frame["text"], strict=True))
    missing = [i for i in ids if i not in text]
    if missing:
        raise DataError(path, f"no transcript for {len(missing)} feature rows, e.g. {missing[0]!r}")
    return np.array([text[i] for i in ids], dtype=str)


def validation_videos(train_videos: np.ndarray, count: int = VALID_VIDEOS) -> np.ndarray:
    """The fixed validation carve-out: ``RandomState(0).permutation(sorted(train_videos))[:count]``."""
    return np.random.RandomState(0).permutation(sorted(set(train_videos.tolist())))[:count]


@register_dataset("mosi-bclstm", files=(FEATURES,), size=2199,
                  description="CMU-MOSI sentiment [-3,3], bc-LSTM utterance features t100/a73/v100, "
                              "62/31-video split, valid = 10 train videos")
def load_mosi_bclstm(root: Path, sequences: bool = False) -> AffectDataset:
    path = root / FEATURES
    raw = _read_npz(path)
    for key in ("text", "audio", "video", "label"):
        bad = int((~np.isfinite(raw[key])).sum())
        if bad:
            raise DataError(path, f"{bad} non-finite values in {key!r}")
    split = raw["split"].astype(str).copy()
    if set(np.unique(split)) - {"train", "test"}:
        raise DataError(path, f"unexpected split values {sorted(set(np.unique(split)))}")
    videos = raw["video_id"].astype(str)
    ids = raw["utterance_id"].astype(str)
    split[np.isin(videos, validation_videos(videos[split == "train"])) & (split == "train")] = "valid"
    return AffectDataset(
        name="mosi-bclstm",
        ids=ids,
        text=_read_transcripts(root / TRANSCRIPTS, ids),
        modalities={m: Modality(torch.from_numpy(raw[key].astype(np.float32)))
                    for m, key in (("t", "text"), ("a", "audio"), ("v", "video"))},
        score=torch.from_numpy(raw["label"].astype(np.float32)),
        label=torch.from_numpy(raw["label_binary"].astype(np.int64)),
        class_names=["negative", "non-negative"],
        split=split,
        dialogue_id=videos,
        utt_index=raw["segment"].astype(np.int64) - 1,
        group=videos,
        default_task="sentiment",
        meta={"features": "bc-LSTM release: text-CNN t100, openSMILE a73, 3D-CNN v100",
              "split": "bc-LSTM 62/31 videos; valid = 10 train videos (RandomState(0))"},
    )
