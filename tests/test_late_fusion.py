"""Gated late fusion: relevance weights form a distribution, and a text-mlp checkpoint initialises
the frozen text branch exactly (weights and its input standardisation)."""

from __future__ import annotations

import pytest
import torch

from mmaffect.errors import ConfigError
from mmaffect.models import ModelSpec, create_model
from mmaffect.training.checkpoint import prefixed, save_tensors


def text_mlp_checkpoint(path, dim=12, classes=4):
    torch.manual_seed(0)
    spec = ModelSpec(dims={"t": dim}, seq_dims={}, heads={"logits": classes})
    model = create_model("text-mlp", spec, hidden=16).eval()
    mean, std = torch.randn(dim), torch.rand(dim) + 0.5
    tensors = prefixed(model.state_dict(), "model/") | {"norm/t/vector/mean": mean, "norm/t/vector/std": std}
    save_tensors(path, tensors, {"format": 1, "model": "text-mlp", "model_args": {"hidden": 16},
                                 "spec": spec.to_dict()})
    return model, mean, std


def test_text_branch_reproduces_the_text_mlp(tmp_path):
    text_model, mean, std = text_mlp_checkpoint(tmp_path / "text.safetensors")
    spec = ModelSpec(dims={"t": 12, "a": 5}, seq_dims={}, heads={"logits": 4})
    fusion = create_model("late-fusion", spec, text_hidden=16, text_init=str(tmp_path / "text.safetensors")).eval()
    raw = torch.randn(7, 12)
    expected = text_model({"t": (raw - mean) / std})["logits"]
    torch.testing.assert_close(fusion.branches["t"](raw), expected)
    assert not any(p.requires_grad for p in fusion.branches["t"].parameters())
    assert all(p.requires_grad for p in fusion.branches["a"].parameters())


def test_relevance_is_a_distribution_and_shapes(tmp_path):
    spec = ModelSpec(dims={"t": 12, "a": 5, "v": 3}, seq_dims={}, heads={"logits": 4})
    fusion = create_model("late-fusion", spec).eval()
    batch = {"t": torch.randn(6, 12), "a": torch.randn(6, 5), "v": torch.randn(6, 3), "label": torch.arange(6) % 4}
    out = fusion(batch)
    assert out["relevance"].shape == (6, 3) and out["branch_logits"].shape == (6, 3, 4)
    torch.testing.assert_close(out["relevance"].sum(1), torch.ones(6))
    assert torch.logsumexp(out["logits"], 1).le(1e-5).all()  # a weighted sum of log-probabilities
    assert set(fusion.extra_losses(out, batch)) == {"branch"}


def test_mismatched_text_checkpoint_is_refused(tmp_path):
    text_mlp_checkpoint(tmp_path / "text.safetensors")
    spec = ModelSpec(dims={"t": 12}, seq_dims={}, heads={"logits": 4})
    with pytest.raises(ConfigError, match="does not match the text branch"):
        create_model("late-fusion", spec, text_hidden=32, text_init=str(tmp_path / "text.safetensors"))
    with pytest.raises(ConfigError, match="predicts only logits"):
        create_model("late-fusion", ModelSpec(dims={"t": 12}, seq_dims={}, heads={"score": 1}))


def test_speaker_gate_lowers_visual_relevance_when_the_mouth_does_not_follow_the_voice():
    from mmaffect.extraction.summaries import VISUAL_VECTOR_NAMES

    width = len(VISUAL_VECTOR_NAMES)
    spec = ModelSpec(dims={"t": 12, "v": width}, seq_dims={}, heads={"logits": 4})
    torch.manual_seed(0)
    fusion = create_model("late-fusion", spec, speaker_gate=True, visual_names=list(VISUAL_VECTOR_NAMES)).eval()
    v = torch.zeros(2, width)
    v[:, VISUAL_VECTOR_NAMES.index("face_rate")] = 1.0
    v[:, VISUAL_VECTOR_NAMES.index("speaker_sync")] = torch.tensor([0.6, -0.4])  # speaking vs listening face
    relevance = fusion({"t": torch.zeros(2, 12), "v": v})["relevance"][:, 1]
    assert relevance[0] > relevance[1]
    v[:, VISUAL_VECTOR_NAMES.index("face_rate")] = 0.0  # no face at all: the visual branch is ignored
    assert fusion({"t": torch.zeros(2, 12), "v": v})["relevance"][:, 1].max() < 1e-3
    with pytest.raises(ConfigError, match="speaker_gate needs visual_names"):
        create_model("late-fusion", ModelSpec(dims={"v": 7}, seq_dims={}, heads={"logits": 2}), speaker_gate=True)
    with pytest.raises(ConfigError, match="7 wide but visual_names names"):
        create_model("late-fusion", ModelSpec(dims={"v": 7}, seq_dims={}, heads={"logits": 2}), speaker_gate=True,
                     visual_names=list(VISUAL_VECTOR_NAMES))
