"""Voice-only emotion models over frame sequences of the audio modality ``a``.

Train them on a cache extracted with ``--audio-encoders logmel,whisper`` and read with
``dataset_args: {audio_sequence: logmel}`` (or ``whisper``), so ``a_seq`` holds the frames themselves.
The utterance-vector model is the existing ``audio-mlp`` (e.g. on ``audio_vector: whisper``).
``late-fusion-voice`` moves a trained ``audio-mlp`` into the audio branch of the analysis model.

* ``audio-cnn`` -- 1-D convolutions over time (the feature bands are the channels), each block
  halving the frame rate, then attention pooling (or a masked mean): learns its own local spectral
  patterns, the usual strong baseline for speech emotion from log-mel.
* ``audio-asp`` -- attentive statistics pooling (Okabe et al., Interspeech 2018): a frame-wise
  projection, attention weights over frames, and the attention-weighted mean *and* standard
  deviation. Emotion lives in a few salient frames and in how much the voice varies, which a plain
  mean over a pretrained encoder's frames loses.

Padded frames never influence the output: every block re-applies the mask and pooling is masked.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mmaffect.errors import ConfigError
from mmaffect.models.base import AffectModel, Heads, ModelSpec, mlp
from mmaffect.models.late_fusion import Branch, GatedLateFusion
from mmaffect.models.registry import register_model

__all__ = ["AudioCNN", "AttentiveStatsPooling", "AudioASP", "VoiceLateFusion", "load_audio_branch", "masked_softmax"]

# sequence batches are far larger than utterance vectors: keep evaluation batches moderate
_SEQ_TRAIN = {"eval_batch_size": 256, "batch_size": 32, "patience": 15, "epochs": 60}


def masked_softmax(scores: Tensor, mask: Tensor) -> Tensor:
    """Softmax over dim 1 of ``scores`` (B, L) where ``mask`` is True; rows without a True get zeros."""
    scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=1)
    return torch.nan_to_num(weights, nan=0.0)


class AttentiveStatsPooling(nn.Module):
    """``(B, L, d), (B, L) -> (B, 2d)``: attention-weighted mean and standard deviation over frames."""

    def __init__(self, dim: int, attention_hidden: int = 128):
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, attention_hidden), nn.Tanh(), nn.Linear(attention_hidden, 1))

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        w = masked_softmax(self.score(x).squeeze(-1), mask)  # (B, L)
        mean = torch.einsum("bl,bld->bd", w, x)
        var = torch.einsum("bl,bld->bd", w, x * x) - mean * mean
        std = torch.sqrt(var.clamp_min(1e-6))
        return torch.cat([mean, std], dim=-1), w


def _downsample_mask(mask: Tensor) -> Tensor:
    """A frame after pooling is real when any input frame it covers was (the blocks' max-pool on the mask)."""
    return nn.functional.max_pool1d(mask.float()[:, None, :], 2, ceil_mode=True)[:, 0] > 0


@register_model("audio-cnn", description="voice: 1-D CNN over audio frames (log-mel / encoder) + attention pooling",
                modalities=("a",), train_defaults=_SEQ_TRAIN)
class AudioCNN(AffectModel):
    """Conv1d blocks (conv, BatchNorm, ReLU, max-pool 2) over ``a_seq``, then attention or mean pooling.

    Hyper-parameters: ``channels`` per block (its length = number of blocks), ``kernel`` size,
    ``pooling`` ``"attention"`` or ``"mean"``, ``hidden`` of the MLP before the heads, ``dropout``.
    """

    needs = frozenset({"sequences"})

    def __init__(self, spec: ModelSpec, *, channels: tuple[int, ...] = (64, 128, 128), kernel: int = 5,
                 pooling: str = "attention", hidden: int = 128, dropout: float = 0.3, modality: str = "a"):
        super().__init__(spec)
        if pooling not in ("attention", "mean"):
            raise ValueError(f"pooling must be attention or mean, got {pooling!r}")
        self.modality = modality
        self.pooling = pooling
        blocks = []
        width = spec.seq_dims[modality]
        for out in channels:
            blocks.append(nn.Sequential(nn.Conv1d(width, out, kernel, padding=kernel // 2), nn.BatchNorm1d(out),
                                        nn.ReLU(), nn.MaxPool1d(2, ceil_mode=True)))
            width = out
        self.blocks = nn.ModuleList(blocks)
        self.attention = nn.Sequential(nn.Linear(width, 64), nn.Tanh(), nn.Linear(64, 1)) \
            if pooling == "attention" else None
        self.post = nn.Sequential(nn.Dropout(dropout), mlp(width, hidden, 1, dropout))
        self.heads = Heads(hidden, spec.heads)

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        x = batch[f"{self.modality}_seq"]
        mask = batch[f"{self.modality}_mask"]
        h = x.transpose(1, 2) * mask[:, None, :]
        for block in self.blocks:
            h = block(h)
            mask = _downsample_mask(mask)
            h = h * mask[:, None, :]
        h = h.transpose(1, 2)  # (B, L', C)
        if self.attention is not None:
            w = masked_softmax(self.attention(h).squeeze(-1), mask)
        else:
            w = mask.float() / mask.float().sum(1, keepdim=True).clamp_min(1.0)
        pooled = torch.einsum("bl,blc->bc", w, h)
        return {**self.heads(self.post(pooled)), "attention": w}


@register_model("audio-asp", description="voice: frame projection + attentive statistics pooling (mean and std)",
                modalities=("a",), train_defaults=_SEQ_TRAIN)
class AudioASP(AffectModel):
    """Frame-wise ``Linear -> ReLU`` (``frame_hidden``; 0 = the raw frames), attentive statistics
    pooling, then an MLP (``hidden``) and the heads."""

    needs = frozenset({"sequences"})

    def __init__(self, spec: ModelSpec, *, frame_hidden: int = 256, attention_hidden: int = 128, hidden: int = 256,
                 dropout: float = 0.3, modality: str = "a"):
        super().__init__(spec)
        self.modality = modality
        width = spec.seq_dims[modality]
        self.frame = nn.Sequential(nn.Dropout(0.1), nn.Linear(width, frame_hidden), nn.ReLU()) \
            if frame_hidden else nn.Identity()
        width = frame_hidden or width
        self.pool = AttentiveStatsPooling(width, attention_hidden)
        self.post = nn.Sequential(nn.Dropout(dropout), mlp(2 * width, hidden, 1, dropout))
        self.heads = Heads(hidden, spec.heads)

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        x = batch[f"{self.modality}_seq"]
        mask = batch[f"{self.modality}_mask"]
        stats, w = self.pool(self.frame(x), mask)
        return {**self.heads(self.post(stats)), "attention": w}


def load_audio_branch(path: str, branch: nn.Module, frozen: bool) -> None:
    """Copy an ``audio-mlp`` checkpoint's hidden layers and its input standardisation into ``branch``
    (a :class:`~mmaffect.models.late_fusion.Branch`); the class layer stays new, because the voice
    model's classes (e.g. RAVDESS's 8) are not the fusion model's. ``frozen``: the copied layers and
    the standardisation are not trained further (only the new class layer learns)."""
    from mmaffect.training.checkpoint import load_tensors, unprefixed

    tensors, meta = load_tensors(path)
    if meta.get("model") != "audio-mlp":
        raise ConfigError(f"{path}: audio_init needs an audio-mlp checkpoint, not {meta.get('model')!r}")
    weights = unprefixed(tensors, "model/")
    state = {k: v for k, v in weights.items() if k.startswith("body.")}
    norm = unprefixed(tensors, "norm/a/vector/")
    if norm:
        state["mean"], state["std"] = norm["mean"], norm["std"]
    expected = branch.state_dict()
    wrong = [k for k, v in state.items() if k not in expected or expected[k].shape != v.shape]
    wrong += sorted(k for k in expected if k.startswith("body.") and k not in state)
    if wrong:
        raise ConfigError(f"{path}: its audio-mlp does not match the audio branch (the audio vector and "
                          f"audio_hidden must agree with the checkpoint's; {', '.join(wrong)})")
    branch.load_state_dict(state, strict=False)
    if frozen:
        for p in branch.body.parameters():
            p.requires_grad_(False)


@register_model("late-fusion-voice", description="gated late fusion whose audio branch starts from a voice model "
                                                 "(an audio-mlp, e.g. trained on RAVDESS)", heads=("logits",))
class VoiceLateFusion(GatedLateFusion):
    """``late-fusion`` with an MLP audio branch (``audio_hidden``, one layer, as ``audio-mlp``) whose
    hidden layer and input standardisation come from ``audio_init``, frozen (``audio_frozen``) or
    fine-tuned on the clips. Transfer: the 40 clips are too few to learn a voice representation; a
    model trained on 960 acted utterances may already have one. Run with ``standardize`` not covering
    ``a``: the branch standardises the audio vector as its voice model was trained."""

    def __init__(self, spec: ModelSpec, *, hidden: int = 64, layers: int = 0, dropout: float = 0.3,
                 gate_hidden: int = 16, text_hidden: int = 256, text_layers: int = 1,
                 text_init: str | None = None, speaker_gate: bool = False, visual_names: list[str] | None = None,
                 audio_init: str | None = None, audio_frozen: bool = True, audio_hidden: int = 256):
        super().__init__(spec, hidden=hidden, layers=layers, dropout=dropout, gate_hidden=gate_hidden,
                         text_hidden=text_hidden, text_layers=text_layers, text_init=text_init,
                         speaker_gate=speaker_gate, visual_names=visual_names)
        if "a" in self.branches:
            self.branches["a"] = Branch(spec.dims["a"], spec.heads["logits"], audio_hidden, 1, dropout)
            if audio_init:
                load_audio_branch(audio_init, self.branches["a"], audio_frozen)
        self.audio_frozen = audio_frozen and bool(audio_init) and "a" in self.branches

    def train(self, mode: bool = True):
        """A frozen audio branch also keeps its dropout off: it stays the voice model it was trained as."""
        super().train(mode)
        if self.audio_frozen:
            self.branches["a"].body.eval()
        return self
