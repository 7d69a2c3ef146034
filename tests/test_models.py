"""Every registered model, tested the moment it is registered (timm-style registry tests).

For each model and each task head set: forward with batch 1 (eval) and a padded batch (train), no
NaN, right output shapes, and every parameter receives a gradient.
"""

from __future__ import annotations

import pytest
import torch

from mmaffect.models import ModelSpec, create_model, list_models

DIMS = {"t": 12, "a": 7, "v": 9}
HEADS = [{"score": 1}, {"logits": 4}, {"score": 1, "logits": 3}, {"tags": 5}]


def tiny_spec(info, heads) -> ModelSpec:
    modalities = info.modalities or tuple(DIMS)
    return ModelSpec(dims={m: DIMS[m] for m in modalities}, seq_dims={m: DIMS[m] + 1 for m in modalities},
                     heads=heads)


def tiny_batch(spec: ModelSpec, size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    batch = {"index": torch.arange(size), "score": torch.randn(size, generator=gen)}
    if "logits" in spec.heads:
        batch["label"] = torch.randint(spec.heads["logits"], (size,), generator=gen)
    if "tags" in spec.heads:
        batch["labels"] = torch.randint(2, (size, spec.heads["tags"]), generator=gen).float()
    for m, d in spec.dims.items():
        batch[m] = torch.randn(size, d, generator=gen)
        lengths = torch.randint(1, 6, (size,), generator=gen)
        lengths[0] = 5  # the batch is padded to its longest sequence
        steps = torch.randn(size, 5, spec.seq_dims[m], generator=gen)
        mask = torch.arange(5)[None, :] < lengths[:, None]
        batch[f"{m}_seq"] = steps * mask[..., None]
        batch[f"{m}_mask"] = mask
    # token ids (AffectModel.needs "tokens"): word pieces of the packaged MiniLM vocabulary, right-padded
    lengths = torch.randint(1, 8, (size,), generator=gen)
    lengths[0] = 8
    token_mask = torch.arange(8)[None, :] < lengths[:, None]
    batch["t_tokens"] = torch.randint(1000, 2000, (size, 8), generator=gen) * token_mask
    batch["t_tokens_mask"] = token_mask
    # whole dialogues (needs "dialogues"): the rows as dialogues of up to 4 turns, keys as in data/dataset.py
    turns = min(size, 4)
    turn_mask = (torch.arange(-(-size // turns) * turns) < size).reshape(-1, turns)
    batch["turn_mask"] = turn_mask
    batch["dlg_rows"] = torch.where(turn_mask, turn_mask.flatten().cumsum(0).reshape(turn_mask.shape) - 1, -1)
    batch["speaker_ids"] = (torch.arange(turns) % 2).expand_as(turn_mask) * turn_mask
    for m, d in spec.dims.items():
        grid = torch.zeros(*turn_mask.shape, d)
        grid[turn_mask] = batch[m]
        batch[f"{m}_dlg"] = grid
    if "t" in spec.dims:  # need "pretrained_text": the frozen text vectors, here the text modality's own
        batch["t_pretrained"], batch["t_pretrained_dlg"] = batch["t"], batch["t_dlg"]
    return batch


def check_outputs(out, spec, size):
    for head, width in spec.heads.items():
        name = "score" if head == "score" else head
        assert name in out, f"missing head {name}"
        expected = (size,) if head == "score" else (size, width)
        assert tuple(out[name].shape) == expected
        assert torch.isfinite(out[name]).all()


MODEL_NAMES = [info.name for info in list_models()]


def test_registry_has_the_baselines():
    assert {"tfn", "lmf", "lf-dnn", "ef-mlp", "ef-lstm", "text-mlp", "audio-mlp", "video-mlp"} <= set(MODEL_NAMES)


@pytest.mark.parametrize("heads", HEADS, ids=lambda h: "+".join(h))
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_forward_backward(name, heads):
    info = next(i for i in list_models() if i.name == name)
    if info.heads is not None and set(heads) - set(info.heads):
        pytest.skip(f"{name} predicts only {info.heads}")
    spec = tiny_spec(info, heads)
    torch.manual_seed(0)
    model = create_model(name, spec)

    model.eval()
    with torch.no_grad():
        check_outputs(model(tiny_batch(spec, 1)), spec, 1)

    model.train()
    batch = tiny_batch(spec, 6, seed=1)
    out = model(batch)
    check_outputs(out, spec, 6)
    loss = sum(v.float().pow(2).mean() for k, v in out.items() if k in ("score", "logits", "tags"))
    loss = loss + sum(v.pow(2).mean() for v in model.extra_losses(out, batch).values())
    loss.backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not no_grad, f"parameters without a finite gradient: {no_grad}"


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_modality_subsets(name):
    """Ablations build every model on any modality subset it accepts."""
    info = next(i for i in list_models() if i.name == name)
    subsets = [info.modalities] if info.modalities else [("t",), ("a", "v"), ("t", "a", "v")]
    for subset in subsets:
        heads = {"logits": 3} if info.heads == ("logits",) else {"score": 1}
        spec = ModelSpec(dims={m: DIMS[m] for m in subset}, seq_dims={m: DIMS[m] for m in subset}, heads=heads)
        out = create_model(name, spec).eval()(tiny_batch(spec, 2))
        assert out[next(iter(heads))].shape[0] == 2


def test_unknown_hyperparameter_is_a_clear_error():
    from mmaffect.errors import ConfigError

    spec = ModelSpec(dims=DIMS, seq_dims={}, heads={"score": 1})
    with pytest.raises(ConfigError, match="no hyper-parameter hiden"):
        create_model("tfn", spec, hiden=3)
    with pytest.raises(ConfigError, match="needs sequences"):
        create_model("ef-lstm", spec)
