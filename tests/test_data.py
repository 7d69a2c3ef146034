"""Readers on the real files (counts, splits, labels, ids) and the dataset type's invariants."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

import mmaffect.data.erc_text as erc_text
from mmaffect.data import AffectDataset, Modality, dataset_table, load_dataset
from mmaffect.data.standardize import Standardizer
from mmaffect.errors import ConfigError, DataError

VALID_VIDEOS = ("5W7Z1C_fDaE Bfr499ggo-0 X3j2zQgwYgE _dI--eQ6qVU aiEXnCPZubE bOL9jKpeJRs etzxEpPuc6I "
                "f_pcplsH_V0 k5Y_838nuGo nzpVDcQ0ywM").split()


@pytest.fixture()
def fake_text(monkeypatch):
    """Replace the MiniLM encoder by a cheap deterministic one: these tests check reader logic."""

    def fake(texts, sequences):
        vectors = torch.tensor([[len(t), t.count(" "), sum(map(ord, t)) % 97] for t in texts], dtype=torch.float32)
        return Modality(vectors), {"text_encoder": "fake"}

    monkeypatch.setattr(erc_text, "text_modality", fake)


def test_mosi_bclstm_split_and_features(data_dir):
    data = load_dataset("mosi-bclstm", root=data_dir)
    splits = data.split_indices()
    assert {k: len(v) for k, v in splits.items()} == {"train": 1209, "valid": 238, "test": 752}
    assert sorted(set(data.group[splits["valid"]])) == sorted(VALID_VIDEOS)
    assert {k: m.dim for k, m in data.modalities.items()} == {"t": 100, "a": 73, "v": 100}
    assert not set(data.group[splits["test"]]) & set(data.group[np.concatenate([splits["train"], splits["valid"]])])
    assert float(data.score.min()) >= -3 and float(data.score.max()) <= 3
    assert (data.label.numpy() == (data.score.numpy() >= 0)).all()
    assert int((data.score[torch.as_tensor(splits["test"])] == 0).sum()) == 31


def test_iemocap6_reader(data_dir, fake_text):
    data = load_dataset("iemocap6-text", root=data_dir)
    assert {k: len(v) for k, v in data.split_indices().items()} == {"train": 5163, "valid": 647, "test": 1623}
    assert data.class_names == ["hap", "sad", "neu", "ang", "exc", "fru"]
    test = data.split_indices()["test"]
    assert set(data.fold[test]) == {5}
    assert np.bincount(data.label.numpy()[test], minlength=6).tolist() == [144, 245, 384, 170, 299, 381]
    assert set(data.speaker[test]) == {"Ses05F", "Ses05M"}
    assert data.utt_index[0] == 0 and data.dialogue_id[0] == data.ids[0].rsplit("_", 1)[0]


def test_iemocap8_reader_keeps_session1_out_of_training(data_dir, fake_text):
    data = load_dataset("iemocap8-text", root=data_dir)
    assert len(data) == 7527 and data.class_names == ["ang", "exc", "fea", "fru", "hap", "neu", "sad", "sur"]
    splits = data.split_indices()
    assert set(data.fold[splits["test"]]) == {1} and set(data.fold[splits["valid"]]) == {5}
    assert set(data.fold[splits["train"]]) == {2, 3, 4}
    clips = pd.read_csv(data_dir / "iemocap_clips" / "manifest.csv")
    train_ids = set(data.ids[np.concatenate([splits["train"], splits["valid"]])])
    assert not train_ids & set(clips.utterance_id)


def test_meld_readers(data_dir, fake_text):
    seven = load_dataset("meld7-text", root=data_dir)
    three = load_dataset("meld3-text", root=data_dir)
    assert {k: len(v) for k, v in seven.split_indices().items()} == {"train": 9989, "valid": 1109, "test": 2610}
    test = seven.split_indices()["test"]
    counts = dict(zip(seven.class_names, np.bincount(seven.label.numpy()[test], minlength=7), strict=True))
    assert counts == {"neutral": 1256, "joy": 402, "surprise": 281, "anger": 345, "sadness": 208,
                      "disgust": 68, "fear": 50}
    assert three.class_names == ["negative", "neutral", "positive"]
    assert np.bincount(three.label.numpy()[test]).tolist() == [833, 1256, 521]
    assert len(set(seven.ids)) == len(seven)


def test_datasets_table_reports_found_files(data_dir, tmp_path):
    rows = {r["name"]: r for r in dataset_table(data_dir)}
    assert rows["mosi-bclstm"]["found"] and rows["mosi-bclstm"]["size"] == 2199
    assert rows["meld7-text"]["found"] and rows["iemocap6-text"]["size"] == 7433
    assert not any(r["found"] for r in dataset_table(tmp_path) if r["found"] is not None)


def test_missing_file_error_names_the_file(tmp_path):
    with pytest.raises(DataError) as err:
        load_dataset("mosi-bclstm", root=tmp_path)
    message = str(err.value)
    assert "mosi_bclstm_features.npz" in message and "not found" in message and "\n" not in message


def test_corrupt_npz_error_names_the_file(tmp_path):
    target = tmp_path / "mosi_bclstm" / "mosi_bclstm_features.npz"
    target.parent.mkdir()
    target.write_bytes(b"PK\x03\x04 this is not really a zip archive")
    with pytest.raises(DataError, match=r"mosi_bclstm_features\.npz: not a readable \.npz file"):
        load_dataset("mosi-bclstm", root=tmp_path)


def test_corrupt_csv_and_unknown_label_are_reported(tmp_path, fake_text):
    target = tmp_path / "iemocap_erc" / "iemocap_6class_cosmic.csv"
    target.parent.mkdir()
    target.write_text("split,dialogue_id\ntrain,x\n")
    with pytest.raises(DataError, match="missing columns utt_index, utterance_id"):
        load_dataset("iemocap6-text", root=tmp_path)
    target.write_text("split,dialogue_id,utt_index,utterance_id,speaker,label,text\n"
                      "train,Ses01F_a,0,Ses01F_a_F000,F,hap,hello\ntrain,Ses01F_a,1,Ses01F_a_M000,M,joy,hi\n")
    with pytest.raises(DataError, match=r"1 unknown labels \(row 3 'joy'\)"):
        load_dataset("iemocap6-text", root=tmp_path)


def test_unknown_dataset_lists_known_ones():
    with pytest.raises(ConfigError, match="known: .*mosi-bclstm"):
        load_dataset("mosi")


def small_dataset() -> AffectDataset:
    seq = torch.arange(4 * 3 * 2, dtype=torch.float32).view(4, 3, 2)
    lengths = torch.tensor([3, 1, 2, 3])
    return AffectDataset(
        name="toy", ids=np.array(["a", "b", "c", "d"]),
        modalities={"t": Modality.from_sequence(seq, lengths), "a": Modality(torch.randn(4, 5))},
        score=torch.tensor([0.5, -1.0, 0.0, 2.0]), split=np.array(["train", "train", "valid", "test"]))


def test_batch_gathers_and_masks():
    data = small_dataset()
    batch = data.batch(torch.tensor([1, 2]))
    assert batch["t_seq"].shape == (2, 2, 2)  # cut to the longest length in the batch
    assert batch["t_mask"].tolist() == [[True, False], [True, True]]
    torch.testing.assert_close(batch["t"][0], data.modalities["t"].sequence[1, 0])  # masked mean of 1 step
    assert batch["score"].tolist() == [-1.0, 0.0]


def test_take_and_modality_selection():
    data = small_dataset()
    sub = data.take([3, 0])
    assert sub.ids.tolist() == ["d", "a"] and sub.split.tolist() == ["test", "train"]
    assert list(data.with_modalities(["a"]).modalities) == ["a"]
    with pytest.raises(ConfigError, match="has no modality v"):
        data.with_modalities(["v"])
    with pytest.raises(ValueError, match="not unique"):
        AffectDataset(name="dup", ids=np.array(["a", "a"]), modalities={"t": Modality(torch.zeros(2, 1))})


def test_standardizer_uses_training_rows_only():
    data = small_dataset()
    train = np.array([0, 1])
    normed = Standardizer.fit(data, train).apply(data)
    vec = normed.modalities["a"].vector[torch.as_tensor(train)]
    torch.testing.assert_close(vec.mean(0), torch.zeros(5), atol=1e-5, rtol=0)
    seq = normed.modalities["t"]
    assert float(seq.sequence[1, 1:].abs().sum()) == 0.0  # padding stays zero
    restored = Standardizer.from_tensors(Standardizer.fit(data, train).to_tensors())
    torch.testing.assert_close(restored.apply(data).modalities["a"].vector, normed.modalities["a"].vector)


def test_sentiment3_bins_the_score_as_acc3_does(monkeypatch):
    """``sentiment3:NAME`` keeps rows and split and labels round(clip(score, -1, 1)): -0.6 is negative,
    0.5 rounds half to even (neutral), 0.6 positive; a dataset without a score is a one-line error."""
    from mmaffect.data import sentiment_classes as sentiment3

    scores = torch.tensor([-2.5, -0.6, 0.5, 0.6, 3.0])
    toy = AffectDataset(name="toy", ids=np.array(list("abcde")), modalities={"t": Modality(torch.zeros(5, 2))},
                        score=scores, split=np.array(["train"] * 3 + ["test"] * 2))
    monkeypatch.setattr(sentiment3, "load_dataset", lambda name, **_: toy)
    data = load_dataset("sentiment3:toy")
    assert data.label.tolist() == [0, 0, 1, 2, 2]
    assert data.class_names == ["negative", "neutral", "positive"] and data.split.tolist() == toy.split.tolist()
    monkeypatch.setattr(sentiment3, "load_dataset", lambda name, **_: replace(toy, score=None))
    with pytest.raises(ConfigError, match="no sentiment score"):
        load_dataset("sentiment3:toy")


def test_sentiment2_splits_the_score_as_acc2_has0_does(monkeypatch):
    """``sentiment2:NAME``: negative below 0, non-negative from 0 on (0 itself is non-negative, as
    acc2_has0 counts it), a binary task by default."""
    from mmaffect.data import sentiment_classes

    toy = AffectDataset(name="toy", ids=np.array(list("abcd")), modalities={"t": Modality(torch.zeros(4, 2))},
                        score=torch.tensor([-0.2, 0.0, 0.4, -3.0]), split=np.array(["train"] * 2 + ["test"] * 2))
    monkeypatch.setattr(sentiment_classes, "load_dataset", lambda name, **_: toy)
    data = load_dataset("sentiment2:toy")
    assert data.label.tolist() == [0, 1, 1, 0]
    assert data.class_names == ["negative", "non-negative"] and data.default_task == "binary"


def test_minilm_text_replaces_the_corpus_text_vectors(data_dir, monkeypatch):
    """``text_encoder=minilm``: MOSI's text-CNN vectors (trained on its own training videos) give way to
    sentence vectors of the transcripts, row for row; audio, video, labels and split stay as they were."""
    from mmaffect.data import text_features

    seen = []

    def fake(texts, sequences):
        seen.extend(texts)
        return Modality(torch.tensor([[len(t), t.count(" ")] for t in texts], dtype=torch.float32)), \
            {"text_encoder": "fake"}

    monkeypatch.setattr(text_features, "text_modality", fake)
    plain = load_dataset("sentiment2:mosi-bclstm", root=data_dir)
    data = load_dataset("sentiment2:mosi-bclstm", root=data_dir, text_encoder="minilm")
    assert seen == plain.text.tolist()
    assert data.modalities["t"].vector[:, 0].tolist() == [float(len(t)) for t in plain.text]
    assert torch.equal(data.modalities["a"].vector, plain.modalities["a"].vector)
    assert torch.equal(data.label, plain.label) and (data.split == plain.split).all()
    assert data.meta["text_encoder"] == "fake" and data.meta["text_replaced"].startswith("bc-LSTM release")


def test_minilm_text_needs_raw_text():
    from mmaffect.data.text_features import with_minilm_text

    toy = AffectDataset(name="toy", ids=np.array(list("ab")), modalities={"a": Modality(torch.zeros(2, 2))},
                        score=torch.tensor([0.5, -1.0]), split=np.array(["train", "test"]))
    with pytest.raises(ConfigError, match="toy keeps no raw text"):
        with_minilm_text(toy, "toy", sequences=False)
