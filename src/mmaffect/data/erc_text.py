"""Conversation emotion corpora as text: IEMOCAP (COSMIC 6-class split) and MELD (official split).

Text is embedded with the packaged MiniLM encoder (:mod:`mmaffect.features.text`), cached on disk.

IEMOCAP quirk kept on purpose: the COSMIC labels include 53 utterances labelled ``hap`` whose
official label is ``xxx`` (no agreement). We keep COSMIC's labels so numbers compare with the
ERC literature (conv-emotion, DialogueGCN, COSMIC), which trains and tests on exactly these.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mmaffect.data.dataset import AffectDataset
from mmaffect.data.registry import register_dataset
from mmaffect.data.text_features import text_modality
from mmaffect.errors import DataError

IEMOCAP6 = "iemocap_erc/iemocap_6class_cosmic.csv"
IEMOCAP_FULL = "iemocap_erc/iemocap_full_10039.csv"
IEMOCAP8_CLASSES = ["ang", "exc", "fea", "fru", "hap", "neu", "sad", "sur"]  # the clip set's labels
IEMOCAP8_SPLIT = {1: "test", 2: "train", 3: "train", 4: "train", 5: "valid"}
IEMOCAP6_CLASSES = ["hap", "sad", "neu", "ang", "exc", "fru"]  # COSMIC coding 0..5
MELD_FILES = {"train": "meld/train_sent_emo.csv", "valid": "meld/dev_sent_emo.csv",
              "test": "meld/test_sent_emo.csv"}
# Sorted, as the manifest reader orders classes, so `manifest:` on these CSVs reproduces these readers.
MELD_EMOTIONS = ["anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise"]
MELD_SENTIMENTS = ["negative", "neutral", "positive"]


def read_csv(path: Path, columns: list[str], **kwargs) -> pd.DataFrame:
    """Read a CSV, turning parse errors and missing columns into one-line errors naming the file."""
    try:
        frame = pd.read_csv(path, **kwargs)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as exc:
        raise DataError(path, f"not a readable CSV file ({str(exc).splitlines()[0]})") from exc
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(path, f"missing columns {', '.join(missing)}")
    return frame


def class_ids(values: pd.Series, class_names: list[str], path: Path) -> np.ndarray:
    """Map label names to ids; unknown labels are an error that lists them with their row numbers."""
    lookup = {name: i for i, name in enumerate(class_names)}
    ids = values.map(lookup)
    bad = ids.isna()
    if bad.any():
        rows = ", ".join(f"row {i + 2} {values[i]!r}" for i in np.flatnonzero(bad.to_numpy())[:5])
        raise DataError(path, f"{int(bad.sum())} unknown labels ({rows}); expected {', '.join(class_names)}")
    return ids.to_numpy(np.int64).copy()


def _iemocap_dataset(name: str, frame: pd.DataFrame, path: Path, class_names: list[str], split: np.ndarray,
                     session: np.ndarray, sequences: bool, meta: dict) -> AffectDataset:
    """IEMOCAP rows -> dataset; speakers are session actors (``Ses01F``), the unit kept out of test."""
    text, recipe = text_modality(frame["text"].astype(str).tolist(), sequences)
    speaker = (frame["utterance_id"].str.slice(0, 5) + frame["speaker"]).to_numpy(str)
    return AffectDataset(
        name=name,
        ids=frame["utterance_id"].to_numpy(str),
        modalities={"t": text},
        label=torch.from_numpy(class_ids(frame["label"], class_names, path)),
        class_names=class_names,
        split=split,
        fold=session,
        dialogue_id=frame["dialogue_id"].to_numpy(str),
        speaker=speaker,
        utt_index=frame["utt_index"].to_numpy(np.int64),
        group=speaker,
        default_task="classification",
        meta={**recipe, **meta},
        text=frame["text"].astype(str).to_numpy(str),
    )


@register_dataset("iemocap6-text", files=(IEMOCAP6,), size=7433,
                  description="IEMOCAP 6-class emotion, text (MiniLM), COSMIC split 5163/647/1623 "
                              "(test = Session 5)")
def load_iemocap6_text(root: Path, sequences: bool = False) -> AffectDataset:
    path = root / IEMOCAP6
    frame = read_csv(path, ["split", "dialogue_id", "utt_index", "utterance_id", "speaker", "label", "text"],
                     keep_default_na=False)
    session = frame["utterance_id"].str.slice(3, 5).astype(int).to_numpy()
    return _iemocap_dataset(
        "iemocap6-text", frame, path, IEMOCAP6_CLASSES, frame["split"].to_numpy(str), session, sequences,
        {"split": "COSMIC 6-class split: train 5163 / valid 647 / test 1623 (Session 5)",
         "labels": "COSMIC 6-class (53 official 'xxx' utterances labelled hap, kept)"})


@register_dataset("iemocap8-text", files=(IEMOCAP_FULL,), size=7527,
                  description="IEMOCAP official labels of the 8 clip classes, text (MiniLM); train Sessions "
                              "2-4 / valid 5 / test 1 (speaker-independent; the text branch of clip models)")
def load_iemocap8_text(root: Path, sequences: bool = False) -> AffectDataset:
    """Every IEMOCAP utterance whose official majority label is one of the 8 classes of the developer
    clips (Session 1). Session 1 is the test split, so a text model trained here never saw the clips'
    transcripts and can be combined with clip features without leaking."""
    path = root / IEMOCAP_FULL
    frame = read_csv(path, ["utterance_id", "dialogue_id", "utt_index", "session", "speaker", "label", "text"],
                     keep_default_na=False)
    frame = frame[frame["label"].isin(IEMOCAP8_CLASSES)].reset_index(drop=True)
    session = frame["session"].astype(int).to_numpy()
    return _iemocap_dataset(
        "iemocap8-text", frame, path, IEMOCAP8_CLASSES, np.array([IEMOCAP8_SPLIT[s] for s in session]), session,
        sequences, {"split": "official labels (8 clip classes); train Sessions 2-4 / valid 5 / test 1",
                    "labels": "official EmoEvaluation majority labels; xxx/oth/dis dropped"})


def _load_meld(root: Path, sequences: bool, column: str, class_names: list[str], name: str) -> AffectDataset:
    frames = []
    for split, rel in MELD_FILES.items():
        frame = read_csv(root / rel, ["Utterance", "Speaker", column, "Dialogue_ID", "Utterance_ID"],
                         keep_default_na=False)
        frame["split"] = split
        frame["label_id"] = class_ids(frame[column], class_names, root / rel)
        frames.append(frame)
    frame = pd.concat(frames, ignore_index=True)
    dialogue = frame["split"] + "_dia" + frame["Dialogue_ID"].astype(str)
    text, recipe = text_modality(frame["Utterance"].astype(str).tolist(), sequences)
    return AffectDataset(
        name=name,
        ids=(dialogue + "_utt" + frame["Utterance_ID"].astype(str)).to_numpy(str),
        modalities={"t": text},
        label=torch.tensor(frame["label_id"].to_numpy(np.int64)),
        class_names=class_names,
        split=frame["split"].to_numpy(str),
        dialogue_id=dialogue.to_numpy(str),
        speaker=frame["Speaker"].to_numpy(str),
        utt_index=frame["Utterance_ID"].to_numpy(np.int64),
        group=dialogue.to_numpy(str),
        default_task="classification",
        meta={**recipe, "split": "official MELD train 9989 / dev 1109 (valid) / test 2610"},
        text=frame["Utterance"].astype(str).to_numpy(str),
    )


@register_dataset("meld7-text", files=tuple(MELD_FILES.values()), size=13708,
                  description="MELD 7-class emotion, text (MiniLM), official split 9989/1109/2610")
def load_meld7_text(root: Path, sequences: bool = False) -> AffectDataset:
    return _load_meld(root, sequences, "Emotion", MELD_EMOTIONS, "meld7-text")


@register_dataset("meld3-text", files=tuple(MELD_FILES.values()), size=13708,
                  description="MELD 3-class sentiment, text (MiniLM), official split 9989/1109/2610")
def load_meld3_text(root: Path, sequences: bool = False) -> AffectDataset:
    return _load_meld(root, sequences, "Sentiment", MELD_SENTIMENTS, "meld3-text")
