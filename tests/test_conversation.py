"""Fine-tuned encoder vectors for the context models (``dataset_args.text_encoder``) and the online
conversation API: a live conversation predicts exactly what the causal model predicts for the whole
dialogue in a batch, turn by turn, with the packaged MiniLM vectors and with a fine-tuned encoder."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

import mmaffect
from mmaffect.conversation import Conversation
from mmaffect.data import load_dataset
from mmaffect.data.encoded import with_encoded_text
from mmaffect.errors import ConfigError, DataError
from mmaffect.models import create_model
from mmaffect.models.base import ModelSpec
from mmaffect.tasks import make_task
from mmaffect.training.checkpoint import load_tensors, prefixed, save_tensors
from mmaffect.training.config import ExperimentConfig, TrainConfig
from mmaffect.training.runs import run_experiment

GOOD = ["that is wonderful news", "I love it", "great, thank you so much", "what a lovely day", "so happy for you"]
BAD = ["this is awful", "I hate waiting", "leave me alone", "that was terrible", "I am so angry right now"]


def write_corpus(path, flip_test: bool = False) -> str:
    """12 dialogues of 4 turns (train 8 / valid 2 / test 2); speakers A, B (and C in one test dialogue,
    which B opens, so per-dialogue speaker numbering matters). Returns the ``manifest:`` name."""
    rng = np.random.default_rng(0)
    rows = []
    for d in range(12):
        split = "train" if d < 8 else "valid" if d < 10 else "test"
        speakers = ["B", "C", "A", "B"] if d == 11 else ["A", "B", "A", "B"]
        for k in range(4):
            positive = bool(rng.integers(2))
            label = "pos" if positive else "neg"
            if flip_test and split == "test":
                label = "neg" if positive else "pos"
            rows.append({"id": f"d{d}u{k}", "text": str(rng.choice(GOOD if positive else BAD)), "label": label,
                         "split": split, "dialogue_id": f"d{d}", "speaker": speakers[k], "utt_index": k})
    pd.DataFrame(rows).to_csv(path, index=False)
    return f"manifest:{path}"


def write_encoder(path, dataset: str, fold: int | None = None, other_dims: dict | None = None) -> None:
    """An (untrained-head) text-finetune checkpoint recorded as trained on ``dataset``; ``other_dims``:
    modalities besides text the corpus had (recorded, as training on a multimodal corpus records them)."""
    data = load_dataset(dataset)
    task = make_task(data)
    spec = ModelSpec(dims={"t": data.modalities["t"].dim, **(other_dims or {})}, seq_dims={}, heads=task.heads)
    torch.manual_seed(0)
    model = create_model("text-finetune", spec, max_tokens=16)
    meta = {"format": 1, "model": "text-finetune", "model_args": {"max_tokens": 16}, "spec": spec.to_dict(),
            "task": task.to_dict(), "dataset": dataset, "modalities": list(spec.dims), "features": data.meta, "seed": 0,
            "fold": fold, "best_epoch": 1, "train": dataclasses.asdict(TrainConfig())}
    save_tensors(path, prefixed(model.state_dict(), "model/"), meta)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("conversation")
    dataset = write_corpus(folder / "dialogues.csv")
    write_encoder(folder / "encoder.safetensors", dataset)
    return folder, dataset


@pytest.fixture(autouse=True)
def own_cache(tmp_path_factory, monkeypatch):
    """Encoded vectors go to a temporary cache (the MiniLM text cache stays shared)."""
    import mmaffect.data.encoded as encoded

    folder = tmp_path_factory.getbasetemp() / "encoded-cache"
    monkeypatch.setattr(encoded, "cache_root", lambda: folder)


def train(dataset: str, out, model: str, model_args: dict, encoder=None) -> dict:
    config = ExperimentConfig(dataset=dataset, model=model, model_args=model_args,
                              dataset_args={} if encoder is None else {"text_encoder": str(encoder)},
                              train=TrainConfig(epochs=3, patience=3, batch_size=2, lr=1e-2, select="f1_weighted"))
    return run_experiment(config, out, progress=False)


def test_encoded_vectors_are_the_checkpoints_pooled_features_and_are_cached(corpus, monkeypatch):
    folder, dataset = corpus
    data = load_dataset(dataset)
    encoded = load_dataset(dataset, text_encoder=str(folder / "encoder.safetensors"))
    model = mmaffect.load(folder / "encoder.safetensors").models[0].model
    data.tokenize(model.tokenizer, model.max_tokens)
    with torch.no_grad():
        features = model(data.batch(torch.arange(3), ("tokens",), f"{model.tokenizer}@{model.max_tokens}"))["features"]
    assert torch.allclose(encoded.modalities["t"].vector[:3], features, atol=1e-5)
    assert not torch.allclose(encoded.modalities["t"].vector, data.modalities["t"].vector, atol=1e-2)
    record = encoded.meta["text_encoder_checkpoint"]
    assert record["dataset"] == dataset and len(record["sha256"]) == 64 and record["seed"] == 0
    assert encoded.meta["text_encoder"].startswith("text-finetune@sha256:")

    import mmaffect.data.encoded as module

    monkeypatch.setattr(module, "encode_texts", lambda *a: pytest.fail("encoded twice"))
    again = with_encoded_text(data, dataset, folder / "encoder.safetensors")
    assert torch.equal(again.modalities["t"].vector, encoded.modalities["t"].vector)


def test_an_encoder_fine_tuned_on_a_multimodal_corpus_encodes_its_text(corpus, tmp_path):
    """text-finetune trained on mosi-bclstm records t, a and v; encoding reads only the text, and the other
    modalities are kept rather than dropped (dropping them made loading the encoder fail)."""
    from mmaffect.data.dataset import Modality
    from mmaffect.data.encoded import encode_texts
    from mmaffect.inference import load_model

    folder, dataset = corpus
    write_encoder(tmp_path / "multi.safetensors", dataset, other_dims={"a": 3})
    data = load_dataset(dataset)
    multi = dataclasses.replace(data, modalities={**data.modalities, "a": Modality(torch.randn(len(data), 3))})
    vectors = encode_texts(multi, load_model(tmp_path / "multi.safetensors"))
    text_only = encode_texts(data, load_model(folder / "encoder.safetensors"))
    assert torch.allclose(vectors, text_only, atol=1e-6)


def test_an_encoder_that_may_have_seen_the_test_rows_is_refused(corpus, tmp_path):
    folder, dataset = corpus
    write_encoder(tmp_path / "other.safetensors", write_corpus(tmp_path / "other.csv"))
    with pytest.raises(DataError, match="trained on 'manifest:.*other.csv'"):
        load_dataset(dataset, text_encoder=str(tmp_path / "other.safetensors"))
    write_encoder(tmp_path / "fold.safetensors", dataset, fold=2)
    with pytest.raises(DataError, match="cross-validation"):
        load_dataset(dataset, text_encoder=str(tmp_path / "fold.safetensors"))
    with pytest.raises(DataError, match="not found"):
        load_dataset(dataset, text_encoder=str(tmp_path / "missing.safetensors"))


def test_test_labels_are_not_read_with_a_fine_tuned_encoder(tmp_path):
    """Flipped test labels (the encoder checkpoint is the same file's weights) give the same weights."""
    weights = []
    for name, flip in (("clean", False), ("flipped", True)):
        dataset = write_corpus(tmp_path / f"{name}.csv", flip_test=flip)
        write_encoder(tmp_path / f"{name}.safetensors", dataset)
        result = train(dataset, tmp_path / name, "dialogue-rnn", {"bidirectional": False},
                       encoder=tmp_path / f"{name}.safetensors")
        weights.append((result, load_tensors(tmp_path / name / "seed0" / "model.safetensors")[0]))
    (clean, a), (flipped, b) = weights
    assert clean["valid"]["loss"]["mean"] == flipped["valid"]["loss"]["mean"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert clean["test"]["acc"]["mean"] == pytest.approx(100 - flipped["test"]["acc"]["mean"])


@pytest.mark.parametrize("encoder", [False, True], ids=["minilm", "fine-tuned"])
@pytest.mark.parametrize(("model", "model_args"), [("dialogue-rnn", {"bidirectional": False}),
                                                   ("turn-transformer", {"causal": True}), ("compm", {})])
def test_online_predictions_equal_the_batch_predictions(corpus, tmp_path, model, model_args, encoder):
    folder, dataset = corpus
    train(dataset, tmp_path / "run", model, model_args, encoder=folder / "encoder.safetensors" if encoder else None)
    batch = pd.read_csv(tmp_path / "run" / "seed0" / "predictions.csv").set_index("id")  # all test dialogues at once
    rows = pd.read_csv(folder / "dialogues.csv")
    conversation = Conversation(mmaffect.load(tmp_path / "run"))
    for dialogue in ("d10", "d11"):
        conversation.reset()
        for turn in rows[rows["dialogue_id"] == dialogue].itertuples():
            online = conversation.add(turn.speaker, turn.text)
            expected = batch.loc[turn.id]
            assert online["turn"] == turn.utt_index and online["speaker"] == turn.speaker
            assert online["label"] == expected["pred_label"]
            assert online["probabilities"]["pos"] == pytest.approx(expected["prob_pos"], abs=1e-5)
    assert [s for s, _ in conversation.turns] == ["B", "C", "A", "B"]


def test_a_bidirectional_model_or_bad_turns_are_refused(corpus, tmp_path):
    folder, dataset = corpus
    train(dataset, tmp_path / "bi", "turn-transformer", {"causal": False})
    with pytest.raises(ConfigError, match="needs a causal model"):
        Conversation(mmaffect.load(tmp_path / "bi"))
    train(dataset, tmp_path / "causal", "turn-transformer", {"causal": True})
    conversation = Conversation(mmaffect.load(tmp_path / "causal"))
    with pytest.raises(ConfigError, match="empty text"):
        conversation.add("A", "  ")
    with pytest.raises(ConfigError, match="speaker"):
        conversation.add("", "hello")
    assert conversation.turns == []
