"""Context models (bc-lstm, dialogue-rnn, turn-transformer): causality, padding, speakers, the
no-context switch, and that the test labels play no part in training or selection."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmaffect.data.dataset import AffectDataset, Modality
from mmaffect.models import create_model
from mmaffect.models.base import ModelSpec
from mmaffect.models.context_common import reverse_turns
from mmaffect.training.checkpoint import load_tensors
from mmaffect.training.config import ExperimentConfig, TrainConfig
from mmaffect.training.runs import RunPlan, run_one

SPEC = ModelSpec(dims={"t": 5, "a": 3}, seq_dims={}, heads={"logits": 4})
VARIANTS = {
    "bc-lstm": ("bc-lstm", {}),
    "bc-lstm-nocontext": ("bc-lstm", {"context": False}),
    "bc-lstm-hier": ("bc-lstm", {"hierarchical": True}),
    "bc-lstm-hier-nocontext": ("bc-lstm", {"hierarchical": True, "context": False}),
    "dialogue-rnn-bi": ("dialogue-rnn", {}),
    "dialogue-rnn-causal": ("dialogue-rnn", {"bidirectional": False}),
    "dialogue-rnn-nocontext": ("dialogue-rnn", {"context": False}),
    "turn-transformer-bi": ("turn-transformer", {}),
    "turn-transformer-causal": ("turn-transformer", {"causal": True}),
    "turn-transformer-nocontext": ("turn-transformer", {"context": False}),
}
CAUSAL = ["dialogue-rnn-causal", "turn-transformer-causal"]
BIDIRECTIONAL = ["bc-lstm", "bc-lstm-hier", "dialogue-rnn-bi", "turn-transformer-bi"]
NO_CONTEXT = ["bc-lstm-nocontext", "bc-lstm-hier-nocontext", "dialogue-rnn-nocontext", "turn-transformer-nocontext"]


def model(variant: str):
    name, args = VARIANTS[variant]
    torch.manual_seed(0)
    return create_model(name, SPEC, **args).eval()


def batch(lengths=(5, 3), width=None, seed=0) -> dict:
    """A dialogue batch as the engine builds it: zeros at padding, speakers by first appearance."""
    gen = torch.Generator().manual_seed(seed)
    width = width or max(lengths)
    mask = torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]
    out = {"turn_mask": mask}
    for key, dim in SPEC.dims.items():
        out[f"{key}_dlg"] = torch.randn(len(lengths), width, dim, generator=gen) * mask[..., None]
    out["speaker_ids"] = (torch.arange(width)[None, :] % 2).repeat(len(lengths), 1) * mask
    return out


def logits(variant: str, b: dict) -> torch.Tensor:
    with torch.no_grad():
        return model(variant)(b)["logits"]


@pytest.mark.parametrize("variant", CAUSAL)
def test_causal_output_for_turn_k_ignores_later_turns(variant):
    b = batch()
    changed = {k: v.clone() for k, v in b.items()}
    changed["t_dlg"][0, 3:] += 5.0  # later turns of dialogue 0 say something else ...
    changed["speaker_ids"][0, 3:] = 0  # ... and are spoken by someone else
    before, after = logits(variant, b), logits(variant, changed)
    assert torch.allclose(before[:3], after[:3], atol=1e-5)  # turns 0-2 of dialogue 0 unchanged
    assert not torch.allclose(before[3:5], after[3:5], atol=1e-3)
    assert torch.allclose(before[5:], after[5:], atol=1e-5)  # the other dialogue unchanged


@pytest.mark.parametrize("variant", BIDIRECTIONAL)
def test_bidirectional_output_reads_later_turns(variant):
    b = batch()
    changed = {k: v.clone() for k, v in b.items()}
    changed["t_dlg"][0, 4] += 5.0
    # an untrained two-level model passes small signals (hierarchical bc-lstm: ~2e-4); one that did not
    # read turn 4 would give turn 0 the same logits to float rounding
    assert not torch.allclose(logits(variant, b)[0], logits(variant, changed)[0], rtol=0, atol=1e-5)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_padding_changes_nothing(variant):
    """A dialogue's outputs are the same alone, next to a longer dialogue (padded to 9 turns), and
    with garbage at its padded turns."""
    alone = logits(variant, batch(lengths=(3,)))
    b = batch(lengths=(3,))
    padded = {"turn_mask": torch.zeros(2, 9, dtype=torch.bool), "speaker_ids": torch.zeros(2, 9, dtype=torch.long)}
    padded["turn_mask"][0, :3] = True
    padded["turn_mask"][1, :] = True
    padded["speaker_ids"][0, :3] = b["speaker_ids"][0]
    padded["speaker_ids"][0, 3:] = 1  # speaker codes and features at padding are not read
    for key, dim in SPEC.dims.items():
        grid = torch.randn(2, 9, dim) * 10
        grid[0, :3] = b[f"{key}_dlg"][0]
        padded[f"{key}_dlg"] = grid
    assert torch.allclose(alone, logits(variant, padded)[:3], atol=1e-5)


@pytest.mark.parametrize("variant", ["dialogue-rnn-causal", "dialogue-rnn-bi", "turn-transformer-causal",
                                     "turn-transformer-bi"])
def test_speakers_matter(variant):
    """Same words, other speaker turns: turn 3 of 'A B A B' differs from turn 3 of 'A A A B'."""
    b = batch(lengths=(4,))
    other = {k: v.clone() for k, v in b.items()}
    other["speaker_ids"] = torch.tensor([[0, 0, 0, 1]])
    assert not torch.allclose(logits(variant, b)[3], logits(variant, other)[3], atol=1e-4)


@pytest.mark.parametrize("variant", NO_CONTEXT)
def test_no_context_variant_sees_each_turn_alone(variant):
    """context=false: a turn's output depends on its own vector only (not other turns, order or speaker)."""
    b = batch()
    changed = {k: v.clone() for k, v in b.items()}
    changed["t_dlg"][0, 1:] += 5.0
    changed["speaker_ids"][0] = 1 - changed["speaker_ids"][0]
    assert torch.allclose(logits(variant, b)[0], logits(variant, changed)[0], atol=1e-5)
    single = {"turn_mask": torch.ones(1, 1, dtype=torch.bool), "speaker_ids": torch.zeros(1, 1, dtype=torch.long),
              **{f"{k}_dlg": b[f"{k}_dlg"][1:, 2:3] for k in SPEC.dims}}  # dialogue 1, turn 2, alone
    assert torch.allclose(logits(variant, b)[7], logits(variant, single)[0], atol=1e-5)


def test_hierarchical_bc_lstm_reads_each_modality_through_its_own_lstm():
    """hierarchical=true adds one LSTM per modality before the fusion LSTM; a modality's level sees only
    that modality (its output does not move when another modality changes)."""
    flat, hier = model("bc-lstm"), model("bc-lstm-hier")
    assert flat.unimodal is None and set(hier.unimodal) == set(SPEC.dims)
    assert sum(p.numel() for p in hier.parameters()) > sum(p.numel() for p in flat.parameters())
    b = batch()
    changed = {k: v.clone() for k, v in b.items()}
    changed["a_dlg"] += 1.0 * b["turn_mask"][..., None]
    with torch.no_grad():
        text_level = [hier.unimodal["t"](x["t_dlg"], x["turn_mask"]) for x in (b, changed)]
        audio_level = [hier.unimodal["a"](x["a_dlg"], x["turn_mask"]) for x in (b, changed)]
    assert torch.equal(*text_level) and not torch.allclose(*audio_level)
    assert not torch.allclose(logits("bc-lstm-hier", b), logits("bc-lstm-hier", changed))


def test_reverse_turns_keeps_padding_in_place_and_is_its_own_inverse():
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1], [1, 0, 0, 0]]).bool()
    index = reverse_turns(mask)
    assert index.tolist() == [[2, 1, 0, 3], [3, 2, 1, 0], [0, 1, 2, 3]]
    assert torch.equal(index.gather(1, index), torch.arange(4).repeat(3, 1))


def previous_turn_dialogues(dialogues: int = 36, turns: int = 6, dim: int = 4, seed: int = 0) -> AffectDataset:
    """Dialogues whose turn k is labelled by the sign of turn k-1's first feature (turn 0 by its own):
    only a model with context can do better than chance. Split by dialogue 2:1:1."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(dialogues, turns, dim)).astype(np.float32)
    source = np.concatenate([x[:, :1, 0], x[:, :-1, 0]], axis=1)
    label = (source > 0).astype(np.int64).reshape(-1)
    n = dialogues * turns
    dialogue = np.repeat(np.arange(dialogues), turns)
    split = np.where(dialogue < dialogues // 2, "train", np.where(dialogue < 3 * dialogues // 4, "valid", "test"))
    return AffectDataset(
        name="previous-turn", ids=np.array([f"u{i}" for i in range(n)]),
        modalities={"t": Modality(torch.from_numpy(x.reshape(n, dim)))},
        label=torch.from_numpy(label), class_names=["neg", "pos"], split=split,
        dialogue_id=np.array([f"d{d}" for d in dialogue]), utt_index=np.tile(np.arange(turns), dialogues),
        speaker=np.array(["A", "B"] * (n // 2)), default_task="classification")


def run(data: AffectDataset, variant: str, tmp, epochs: int = 6):
    name, args = VARIANTS[variant]
    config = ExperimentConfig(dataset="previous-turn", model=name, model_args=args,
                              train=TrainConfig(epochs=epochs, patience=epochs, batch_size=4, lr=1e-2,
                                                select="f1_weighted"))
    rows = data.split_indices()
    plan = RunPlan(0, None, rows["train"], rows["valid"], rows["test"])
    tmp.mkdir()
    return run_one(config, data, plan, tmp, progress=False), load_tensors(tmp / "model.safetensors")[0]


@pytest.mark.parametrize("variant", ["dialogue-rnn-causal", "turn-transformer-bi"])
def test_test_labels_are_not_read_before_the_final_evaluation(variant, tmp_path):
    """Poisoned test labels (every one flipped) give the same epochs, validation values, selected
    epoch and weights; only the final test metrics change."""
    data = previous_turn_dialogues()
    poisoned = previous_turn_dialogues()
    test = data.split == "test"
    poisoned.label[test] = 1 - poisoned.label[test]
    clean_record, clean_weights = run(data, variant, tmp_path / "clean")
    poison_record, poison_weights = run(poisoned, variant, tmp_path / "poisoned")
    assert clean_record["best_epoch"] == poison_record["best_epoch"]
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in clean_record["history"]]
    assert strip == [{k: v for k, v in h.items() if k != "seconds"} for h in poison_record["history"]]
    assert clean_record["valid"] == poison_record["valid"]
    assert clean_weights.keys() == poison_weights.keys()
    assert all(torch.equal(clean_weights[k], poison_weights[k]) for k in clean_weights)
    assert clean_record["test"]["acc"] == pytest.approx(100.0 - poison_record["test"]["acc"])


def test_causal_context_learns_what_no_context_cannot(tmp_path):
    """The label is in the previous turn: the causal turn transformer must beat its no-context twin."""
    data = previous_turn_dialogues(dialogues=60)
    context, _ = run(data, "turn-transformer-causal", tmp_path / "context", epochs=15)
    alone, _ = run(data, "turn-transformer-nocontext", tmp_path / "alone", epochs=15)
    assert context["test"]["acc"] > alone["test"]["acc"] + 15


# -- text-finetune: speaker-tagged previous turns in the input window, freezing, layer-wise lr decay

def token_batch(texts: list[list[str]], speakers: list[list[int]], max_tokens: int = 16) -> dict:
    """A dialogue batch of token ids as the engine builds it (real turns first, dialogue by dialogue)."""
    from mmaffect.features.text import token_ids

    flat = [t for dialogue in texts for t in dialogue]
    ids, lengths = token_ids(flat, "minilm", max_tokens)
    width = max(len(d) for d in texts)
    mask = torch.tensor([[k < len(d) for k in range(width)] for d in texts])
    grid = torch.tensor([[s[k] if k < len(s) else 0 for k in range(width)] for s in speakers])
    return {"t_tokens": ids, "t_tokens_mask": torch.arange(ids.shape[1])[None] < lengths[:, None],
            "turn_mask": mask, "speaker_ids": grid}


def finetune(**args):
    torch.manual_seed(0)
    return create_model("text-finetune", ModelSpec({"t": 384}, {}, {"logits": 2}), max_tokens=16, **args).eval()


def test_context_window_holds_the_previous_turns_speaker_tagged_most_recent_first():
    from mmaffect.features.text import load_tokenizer

    model = finetune(context_turns=2, context_tokens=24)
    assert model.needs == frozenset({"tokens", "dialogues"}) and model.online
    b = token_batch([["hello there", "go away", "why so rude", "sorry"], ["fine"]], [[0, 1, 0, 1], [0]])
    ids, mask, pool = model.context_windows(b)
    decode = load_tokenizer("minilm").decode
    windows = [decode(ids[i][mask[i]]) for i in range(5)]
    assert windows[0] == "[CLS] a : hello there [SEP]"
    assert windows[2] == "[CLS] a : why so rude [SEP] b : go away [SEP] a : hello there [SEP]"
    assert windows[3] == "[CLS] b : sorry [SEP] a : why so rude [SEP] b : go away [SEP]"  # 2 turns back at most
    assert windows[4] == "[CLS] a : fine [SEP]"  # the next dialogue starts afresh
    assert decode(ids[2][pool[2]]) == "[CLS] a : why so rude [SEP]"  # the vector pools the current turn only
    short = finetune(context_turns=2, context_tokens=16).context_windows(b)
    assert decode(short[0][2][short[1][2]]) == "[CLS] a : why so rude [SEP] b : go away [SEP]"  # oldest dropped


def test_context_window_model_is_causal():
    model = finetune(context_turns=3)
    b = token_batch([["hello there", "go away", "why so rude", "sorry"]], [[0, 1, 0, 1]])
    changed = token_batch([["hello there", "go away", "you are wonderful and kind", "thanks a lot"]], [[0, 1, 0, 0]])
    with torch.no_grad():
        before, after = model(b)["logits"], model(changed)["logits"]
    assert torch.allclose(before[:2], after[:2], atol=1e-5)
    assert not torch.allclose(before[2:], after[2:], atol=1e-4)


def test_freeze_then_unfreeze_and_layer_wise_lr_decay():
    from mmaffect.models.base import EpochState

    model = finetune(freeze_epochs=1, layer_decay=0.5).train()
    assert "encoder_frozen" in model.state_dict() and "encoder_frozen" not in finetune().state_dict()
    b = token_batch([["hello there", "go away"]], [[0, 1]])
    model(b)["logits"].sum().backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert all(p.grad is not None for p in model.heads.parameters())
    model.on_epoch_end(EpochState(epoch=1, data=None, train_rows=None, outputs=None))
    model(b)["logits"].sum().backward()
    assert all(p.grad is not None for p in model.encoder.encoder.layer[0].parameters())
    lrs = [g["lr"] for g in model.param_groups(TrainConfig())[:-1]]
    assert lrs == pytest.approx([5e-5 * 0.5 ** (6 - d) for d in range(7)])  # embeddings, layers 0..5
    assert "lr" not in model.param_groups(TrainConfig())[-1]  # the head keeps train.lr
    assert sum(len(g["params"]) for g in model.param_groups(TrainConfig())) == len(list(model.parameters()))


def text_dialogues(flip_test: bool = False) -> AffectDataset:
    """10 short dialogues with raw text; labels from words; split 6:2:2 by dialogue."""
    rng = np.random.default_rng(0)
    words = {0: ["awful day", "I hate this", "go away"], 1: ["lovely news", "thank you", "so glad"]}
    text, label, dialogue, turn, speaker, split = [], [], [], [], [], []
    for d in range(10):
        part = "train" if d < 6 else "valid" if d < 8 else "test"
        for k in range(3):
            y = int(rng.integers(2))
            text.append(str(rng.choice(words[y])))
            label.append(1 - y if flip_test and part == "test" else y)
            dialogue.append(f"d{d}"), turn.append(k), speaker.append("AB"[k % 2]), split.append(part)
    n = len(text)
    return AffectDataset(name="text-dialogues", ids=np.array([f"u{i}" for i in range(n)]),
                         modalities={"t": Modality(torch.zeros(n, 384))}, label=torch.tensor(label),
                         class_names=["neg", "pos"], split=np.array(split), dialogue_id=np.array(dialogue),
                         utt_index=np.array(turn), speaker=np.array(speaker), text=np.array(text))


def test_context_window_training_never_reads_test_labels(tmp_path):
    records = []
    for name, flip in (("clean", False), ("flipped", True)):
        data = text_dialogues(flip)
        config = ExperimentConfig(dataset="text-dialogues", model="text-finetune",
                                  model_args={"context_turns": 2, "max_tokens": 16, "freeze_epochs": 1},
                                  train=TrainConfig(epochs=2, batch_size=3, lr=1e-3, patience=2))
        rows = data.split_indices()
        (tmp_path / name).mkdir()
        record = run_one(config, data, RunPlan(0, None, rows["train"], rows["valid"], rows["test"]), tmp_path / name,
                         progress=False)
        records.append((record, load_tensors(tmp_path / name / "model.safetensors")[0]))
    (clean, a), (flipped, b) = records
    assert clean["valid"] == flipped["valid"] and all(torch.equal(a[k], b[k]) for k in a)
    assert clean["test"]["acc"] == pytest.approx(100.0 - flipped["test"]["acc"])
