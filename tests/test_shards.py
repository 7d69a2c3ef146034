"""Sharded, memory-mapped features (mmaffect.data.shards): the same batches and the same training as the
in-memory dataset built from the same arrays, a batch reads exactly its rows, bad folders refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmaffect.data.dataset import AffectDataset, Modality
from mmaffect.data.shards import ShardWriter, load_shards
from mmaffect.errors import DataError
from mmaffect.models.registry import create_model
from mmaffect.tasks import make_task
from mmaffect.training.config import TrainConfig
from mmaffect.training.runs import model_spec
from mmaffect.training.trainer import fit

N, SHARD = 150, 40
DIMS = {"t": (8, None), "a": (6, 5), "v": (4, 3)}


@pytest.fixture(scope="module")
def arrays():
    rng = np.random.default_rng(0)
    label = rng.integers(0, 3, N)
    vectors = {m: rng.standard_normal((N, d)).astype(np.float16) for m, (d, _) in DIMS.items()}
    vectors["a"][:, 0] += label  # learnable
    seqs = {m: [rng.standard_normal((int(rng.integers(1, 12)), s)).astype(np.float16) for _ in range(N)]
            for m, (_, s) in DIMS.items() if s}
    split = np.array(["train"] * 100 + ["valid"] * 25 + ["test"] * 25)
    return vectors, seqs, label, split


@pytest.fixture(scope="module")
def folder(arrays, tmp_path_factory):
    vectors, seqs, label, split = arrays
    writer = ShardWriter(tmp_path_factory.mktemp("shards") / "s", DIMS, class_names=["x", "y", "z"])
    for start in range(0, N, SHARD):
        part = slice(start, start + SHARD)
        writer.add({m: v[part] for m, v in vectors.items()}, {m: s[part] for m, s in seqs.items()},
                   ids=[f"u{i}" for i in range(N)][part], split=split[part], label=label[part])
    return writer.close()


def in_memory(arrays) -> AffectDataset:
    vectors, seqs, label, split = arrays
    modalities = {}
    for m, v in vectors.items():
        if m in seqs:
            lengths = torch.tensor([len(s) for s in seqs[m]])
            padded = torch.zeros(N, int(lengths.max()), DIMS[m][1], dtype=torch.float16)
            for i, s in enumerate(seqs[m]):
                padded[i, :len(s)] = torch.from_numpy(s)
            modalities[m] = Modality(torch.from_numpy(v), padded, lengths)
        else:
            modalities[m] = Modality(torch.from_numpy(v))
    return AffectDataset(name="mem", ids=np.array([f"u{i}" for i in range(N)]), modalities=modalities,
                         label=torch.from_numpy(label), class_names=["x", "y", "z"], split=split)


def test_batches_equal_the_in_memory_dataset(arrays, folder):
    streamed, memory = load_shards(folder), in_memory(arrays)
    assert streamed.modalities["a"].seq_dim == 5 and streamed.modalities["t"].sequence is None
    index = torch.tensor([149, 0, 41, 39, 40, 80, 3])  # across shard borders, unordered
    a, b = streamed.batch(index), memory.batch(index)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert torch.equal(streamed.modalities["v"].sequence[index, :2], memory.modalities["v"].sequence[index, :2])
    taken = streamed.take([5, 45])
    assert torch.equal(taken.modalities["a"].sequence, memory.take([5, 45]).modalities["a"].sequence)


def test_training_on_shards_equals_training_in_memory(arrays, folder):
    torch.set_num_threads(1)
    results = []
    for data in (load_shards(folder), in_memory(arrays)):
        data = data.with_modalities(["a", "v"])
        rows = data.split_indices()
        task = make_task(data, None, train_index=rows["train"])
        torch.manual_seed(0)
        model = create_model("ef-lstm", model_spec(data, task), hidden=8, post_hidden=8)
        result = fit(model, data, task, rows["train"], rows["valid"], TrainConfig(epochs=2, batch_size=16), 0,
                     progress=False)
        results.append(result)
    assert [h["valid_loss"] for h in results[0].history] == [h["valid_loss"] for h in results[1].history]
    for key, value in results[0].best_state.items():
        assert torch.equal(value, results[1].best_state[key]), key


def test_a_batch_reads_exactly_its_rows(folder):
    data = load_shards(folder)
    files = data.modalities["a"].sequence.files
    index = torch.tensor([3, 77, 120])
    before = files.bytes_read
    data.batch(index)
    lengths = {m: data.modalities[m].lengths[index].sum().item() for m in ("a", "v")}
    expected = 2 * (3 * (8 + 6 + 4) + lengths["a"] * 5 + lengths["v"] * 3)  # float16 vectors + steps
    assert files.bytes_read - before == expected


def test_a_folder_that_is_not_shards_is_a_one_line_error(tmp_path, folder):
    with pytest.raises(DataError, match="not a feature shard folder"):
        load_shards(tmp_path)
    (folder / "shard_00001" / "a_steps.npy").rename(tmp_path / "moved.npy")
    try:
        with pytest.raises(DataError, match="unreadable feature shard"):
            load_shards(folder).batch(torch.tensor([45]))
    finally:
        (tmp_path / "moved.npy").rename(folder / "shard_00001" / "a_steps.npy")
