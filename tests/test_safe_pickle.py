"""Feature-file readers: mmsa: loads MMSA-format pickles and refuses anything that could run code;
bad feature files (mmsa:, mosi-bclstm) get one-line errors naming the file."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from mmaffect.data import load_dataset
from mmaffect.data.safe_pickle import safe_load_pickle
from mmaffect.errors import DataError


def mmsa_part(n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    text = rng.normal(size=(n, 6, 8)).astype(np.float32)
    text[:, 4:] = 0  # MMSA pads text with zero rows
    audio = rng.normal(size=(n, 5, 3)).astype(np.float32)
    audio[0, 0, 0] = -np.inf  # MMSA's audio has -inf values, set to 0 on load
    return {"text": text, "audio": audio, "vision": rng.normal(size=(n, 4, 2)).astype(np.float32),
            "audio_lengths": [5] * n, "vision_lengths": [2] * n,
            "regression_labels": rng.uniform(-3, 3, n).astype(np.float32),
            "id": np.array([f"vid{seed}_{i}" for i in range(n)], dtype=object),
            "raw_text": np.array(["some words"] * n, dtype=object)}


def test_mmsa_pickle_loads(tmp_path):
    path = tmp_path / "feats.pkl"
    path.write_bytes(pickle.dumps({"train": mmsa_part(6, 0), "valid": mmsa_part(3, 1), "test": mmsa_part(4, 2)}))
    data = load_dataset(f"mmsa:{path}", sequences=True)
    assert len(data) == 13 and data.split_indices()["test"].tolist() == [9, 10, 11, 12]
    assert {k: m.dim for k, m in data.modalities.items()} == {"t": 8, "a": 3, "v": 2}
    assert data.modalities["t"].lengths.tolist() == [4] * 13  # inferred from the zero padding
    assert data.modalities["v"].lengths.tolist() == [2] * 13
    assert np.isfinite(data.modalities["a"].sequence.numpy()).all()
    assert data.ids[0] == "vid0_0" and data.default_task == "sentiment"


class RunsCode:
    """A pickle payload whose unpickling would create a marker file via os.system."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"train": {"text": RunsCode(marker)}, "valid": {}, "test": {}}))
    # the same payload through plain pickle really would run code: the test can tell the difference
    with pytest.raises(DataError, match=r"evil\.pkl: refused to load 'posix\.system'"):
        load_dataset(f"mmsa:{path}")
    assert not marker.exists()
    pickle.loads(path.read_bytes())
    assert marker.exists()


def test_other_globals_are_refused(tmp_path):
    path = tmp_path / "eval.pkl"
    path.write_bytes(b"cbuiltins\neval\n(V1+1\ntR.")  # protocol-0 pickle calling builtins.eval("1+1")
    with pytest.raises(DataError, match="refused to load 'builtins.eval'"):
        safe_load_pickle(path)


def test_truncated_and_wrong_layout(tmp_path):
    path = tmp_path / "cut.pkl"
    path.write_bytes(pickle.dumps({"train": mmsa_part(3, 0)})[:40])
    with pytest.raises(DataError, match=r"cut\.pkl: not a readable pickle"):
        load_dataset(f"mmsa:{path}")
    path.write_bytes(pickle.dumps({"train": mmsa_part(3, 0)}))
    with pytest.raises(DataError, match="expected a dict with 'train', 'valid' and 'test'"):
        load_dataset(f"mmsa:{path}")
    part = mmsa_part(3, 0)
    part["vision"][1, 1, 1] = np.nan
    path.write_bytes(pickle.dumps({"train": part, "valid": mmsa_part(2, 1), "test": mmsa_part(2, 2)}))
    with pytest.raises(DataError, match="train/vision has 1 NaN/inf values"):
        load_dataset(f"mmsa:{path}")


def test_feature_width_differing_between_splits(tmp_path):
    path = tmp_path / "widths.pkl"
    valid = mmsa_part(2, 1)
    valid["audio"] = valid["audio"][:, :, :2]  # 2-wide audio in valid, 3-wide in train and test
    path.write_bytes(pickle.dumps({"train": mmsa_part(3, 0), "valid": valid, "test": mmsa_part(2, 2)}))
    with pytest.raises(DataError) as err:
        load_dataset(f"mmsa:{path}")
    assert str(err.value) == (f"{path}: audio features are 3 wide in 'train' but 2 wide in 'valid' "
                              "(every split must have the same width)")


def test_repeated_ids(tmp_path):
    path = tmp_path / "ids.pkl"
    train, test = mmsa_part(3, 0), mmsa_part(2, 2)
    test["id"][1] = train["id"][2]  # "vid0_2" in train and test
    path.write_bytes(pickle.dumps({"train": train, "valid": mmsa_part(2, 1), "test": test}))
    with pytest.raises(DataError) as err:
        load_dataset(f"mmsa:{path}")
    assert str(err.value) == (f"{path}: id 'vid0_2' occurs in 'train' and 'test' (1 repeated id in all; "
                              "ids must be unique)")
    train["id"][:] = "same"
    path.write_bytes(pickle.dumps({"train": train, "valid": mmsa_part(2, 1), "test": mmsa_part(2, 2)}))
    with pytest.raises(DataError, match=r"id 'same' occurs twice in 'train' \(2 repeated ids in all"):
        load_dataset(f"mmsa:{path}")
    train["id"] = train["id"][:2]
    path.write_bytes(pickle.dumps({"train": train, "valid": mmsa_part(2, 1), "test": mmsa_part(2, 2)}))
    with pytest.raises(DataError, match=r"ids\.pkl: split 'train' has 2 ids but 3 regression_labels"):
        load_dataset(f"mmsa:{path}")


def test_mosi_features_saved_as_npy_instead_of_npz(tmp_path):
    """np.save writes .npy content whatever the file is called; np.load then returns a bare array."""
    path = tmp_path / "mosi_bclstm" / "mosi_bclstm_features.npz"
    path.parent.mkdir()
    with open(path, "wb") as handle:
        np.save(handle, np.zeros((4, 100), dtype=np.float32))
    with pytest.raises(DataError) as err:
        load_dataset("mosi-bclstm", root=tmp_path)
    assert str(err.value).startswith(f"{path}: holds a single .npy array (shape (4, 100)), not an .npz archive")
    assert "\n" not in str(err.value)
    path.write_bytes(b"neither npy nor npz")
    with pytest.raises(DataError, match=r"mosi_bclstm_features\.npz: not a readable \.npz file"):
        load_dataset("mosi-bclstm", root=tmp_path)
