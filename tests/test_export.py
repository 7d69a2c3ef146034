"""``mmaffect export mmsa`` and the ``mmsa:`` reader: an exported dataset reads back with the same
rows, splits, features and labels; MMSA's own ``text_bert`` token ids are read; bad input is named."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from mmaffect.cli import main
from mmaffect.data import load_dataset
from mmaffect.data.dataset import AffectDataset, Modality
from mmaffect.data.mmsa import to_mmsa
from mmaffect.errors import DataError


def _aligned(a: AffectDataset, b: AffectDataset) -> np.ndarray:
    """Row order of ``b`` matching ``a``'s ids (the export groups rows by split)."""
    assert sorted(a.ids.tolist()) == sorted(b.ids.tolist())
    position = {i: k for k, i in enumerate(b.ids)}
    return np.asarray([position[i] for i in a.ids])


def test_mosi_export_reads_back_identically(data_dir, tmp_path, capsys):
    out = tmp_path / "mosi.pkl"
    assert main(["export", "mmsa", "--dataset", "mosi-bclstm", "--output", str(out)]) == 0
    assert "train 1209, valid 238, test 752" in capsys.readouterr().out
    raw = pickle.loads(out.read_bytes())  # our own file, written by the test: plain pickle is fine here
    assert raw["train"]["text"].shape == (1209, 1, 100) and raw["test"]["vision"].shape == (752, 1, 100)
    assert raw["valid"]["audio_lengths"].tolist() == [1] * 238
    original, back = load_dataset("mosi-bclstm"), load_dataset(f"mmsa:{out}")
    order = _aligned(original, back)
    assert (back.split[order] == original.split).all()
    for key in "tav":
        assert torch.equal(back.modalities[key].vector[order], original.modalities[key].vector)
    assert torch.equal(back.score[order], original.score) and torch.equal(back.label[order], original.label)
    assert back.default_task == "sentiment"


def _class_dataset() -> AffectDataset:
    rng = np.random.default_rng(0)
    n = 12
    seq = torch.from_numpy(rng.normal(size=(n, 5, 4)).astype(np.float32))
    lengths = torch.from_numpy(rng.integers(1, 6, n))
    seq[torch.arange(5)[None, :] >= lengths[:, None]] = 0  # padded steps are zero, as every reader stores them
    return AffectDataset(
        name="toy", ids=np.asarray([f"u{i}" for i in range(n)]),
        modalities={"t": Modality(torch.from_numpy(rng.normal(size=(n, 3)).astype(np.float32))),
                    "a": Modality.from_sequence(seq, lengths)},
        label=torch.from_numpy(rng.integers(0, 3, n)), class_names=["x", "y", "z"],
        split=np.asarray(["train"] * 6 + ["valid"] * 3 + ["test"] * 3),
        text=np.asarray([f"words {i}" for i in range(n)]))


def test_class_dataset_with_sequences_round_trips(tmp_path):
    data = _class_dataset()
    path = tmp_path / "toy.pkl"
    path.write_bytes(pickle.dumps(to_mmsa(data, sequences=True)))
    back = load_dataset(f"mmsa:{path}", sequences=True)
    assert back.ids.tolist() == data.ids.tolist()  # already grouped by split
    assert set(back.modalities) == {"t", "a"}  # the absent vision stays absent
    assert torch.equal(back.modalities["a"].lengths, data.modalities["a"].lengths)
    assert torch.equal(back.modalities["a"].sequence, data.modalities["a"].sequence)
    assert torch.equal(back.modalities["t"].vector, data.modalities["t"].vector)
    assert torch.equal(back.label, data.label) and back.class_names == ["x", "y", "z"]
    assert back.score is None and back.default_task == "classification"
    assert back.text.tolist() == data.text.tolist()


def test_mmsa_text_bert_token_ids_are_read(tmp_path):
    def part(n: int, offset: int) -> dict:
        ids = np.zeros((n, 3, 6), np.float32)  # MMSA stores them as floats: ids, mask, segment ids
        for i in range(n):
            length = 3 + i % 3
            ids[i, 0, :length] = [101] + [2000 + offset + i] * (length - 2) + [102]
            ids[i, 1, :length] = 1
        return {"text_bert": ids, "audio": np.ones((n, 2, 3), np.float32), "vision": np.ones((n, 2, 2), np.float32),
                "audio_lengths": [2] * n, "vision_lengths": [1] * n,
                "regression_labels": np.linspace(-2, 2, n).astype(np.float32),
                "id": np.asarray([f"v{offset}_{i}" for i in range(n)], dtype=object),
                "raw_text": np.asarray(["a b c"] * n, dtype=object)}

    path = tmp_path / "bert.pkl"
    path.write_bytes(pickle.dumps({"train": part(4, 0), "valid": part(2, 10), "test": part(3, 20)}))
    data = load_dataset(f"mmsa:{path}")
    assert set(data.modalities) == {"a", "v"}  # no text feature array: no t modality
    tokens = data.tokens["bert-base-uncased@6"]
    assert tokens.ids.dtype == torch.int64 and tokens.ids.shape == (9, 6)
    assert tokens.lengths.tolist() == [3, 4, 5, 3, 3, 4, 3, 4, 5]
    assert tokens.ids[1, :4].tolist() == [101, 2001, 2001, 102]


def test_bad_text_bert_and_unsplit_datasets_are_named(tmp_path):
    bad = {"text_bert": np.zeros((2, 6), np.float32), "audio": np.ones((2, 1, 3), np.float32),
           "vision": np.ones((2, 1, 2), np.float32), "regression_labels": np.zeros(2, np.float32)}
    path = tmp_path / "bad.pkl"
    path.write_bytes(pickle.dumps({s: dict(bad, id=np.asarray([f"{s}{i}" for i in range(2)], dtype=object))
                                   for s in ("train", "valid", "test")}))
    with pytest.raises(DataError, match=r"bad\.pkl: train/text_bert must be \(N, 3, L\)"):
        load_dataset(f"mmsa:{path}")
    unsplit = _class_dataset()
    unsplit.split = None
    with pytest.raises(DataError, match="toy: MMSA files need train/valid/test rows"):
        to_mmsa(unsplit)


def test_export_refuses_a_folder_as_output(tmp_path, capsys):
    assert main(["export", "mmsa", "--dataset", "mosi-bclstm", "--output", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
