"""Gated late fusion with per-modality relevance weights (the default video-analysis model).

Each modality has its own classifier (a normalising input layer, then a small MLP or a linear layer)
and a gate reads all modalities and outputs one relevance weight per modality and sample; the
fused logits are the relevance-weighted sum of the per-modality log-probabilities. Two things follow
that matter for real video:

- a modality that is unreliable for a sample (e.g. the visible face is the listener, not the
  speaker; the gate sees face-track confidence among the visual features) can be down-weighted for
  that sample, as in MRE's relevance estimation (seed 004);
- the relevance weights are the model's own per-modality contributions, which ``mmaffect analyze``
  reports.

Each branch also gets its own cross-entropy (``branch`` loss term), so every modality learns to
predict on its own even when another dominates the fused loss.

The text branch can start from a trained ``text-mlp`` checkpoint (``text_init``), e.g. trained on
thousands of transcripts when only a few dozen clips have audio and video; it is then frozen, and
carries its own input standardisation so it sees exactly the inputs it was trained on. Hyper-
parameters ending in ``_init`` only initialise: a checkpoint of this model restores all weights, so
:func:`mmaffect.inference.load_model` drops them. The speaker gate reads two named columns of the
visual vector; their names (``visual_names``) come from the data's feature recipe.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmaffect.errors import ConfigError
from mmaffect.models.base import AffectModel, ModelSpec, mlp
from mmaffect.models.registry import register_model


class Branch(nn.Module):
    """A fixed input standardisation (identity unless copied from a checkpoint), then an MLP
    (``layers`` > 0) or a linear classifier."""

    def __init__(self, in_dim: int, classes: int, hidden: int, layers: int, dropout: float):
        super().__init__()
        self.mean = nn.Buffer(torch.zeros(in_dim))
        self.std = nn.Buffer(torch.ones(in_dim))
        self.body = nn.Sequential(nn.Dropout(dropout), mlp(in_dim, hidden, layers, dropout))
        self.out = nn.Linear(hidden if layers else in_dim, classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.body((x - self.mean) / self.std))


def load_text_branch(path: str, branch: Branch) -> None:
    """Copy a ``text-mlp`` checkpoint (weights and its input standardisation) into ``branch``, frozen.

    Run the fusion model with ``standardize: [a, v]`` so text vectors reach the branch raw, as the
    text-mlp saw them before its own standardisation."""
    from mmaffect.training.checkpoint import load_tensors, unprefixed

    tensors, meta = load_tensors(path)
    if meta.get("model") != "text-mlp":
        raise ConfigError(f"{path}: text_init needs a text-mlp checkpoint, not {meta.get('model')!r}")
    weights = unprefixed(tensors, "model/")
    state = {k: v for k, v in weights.items() if k.startswith("body.")}
    state["out.weight"] = weights["heads.layers.logits.weight"]
    state["out.bias"] = weights["heads.layers.logits.bias"]
    norm = unprefixed(tensors, "norm/t/vector/")
    if norm:
        state["mean"], state["std"] = norm["mean"], norm["std"]
    expected = branch.state_dict()
    wrong = [k for k, v in state.items() if k not in expected or expected[k].shape != v.shape]
    wrong += sorted(set(expected) - set(state) - {"mean", "std"})  # layers the checkpoint lacks
    if wrong:
        raise ConfigError(f"{path}: its text-mlp does not match the text branch "
                          f"(text_hidden/text_layers and the class count must agree; {', '.join(wrong)})")
    branch.load_state_dict(state, strict=False)
    for p in branch.parameters():
        p.requires_grad_(False)


@register_model("late-fusion", description="gated late fusion: per-modality classifiers + relevance weights",
                heads=("logits",))
class GatedLateFusion(AffectModel):
    def __init__(self, spec: ModelSpec, *, hidden: int = 64, layers: int = 0, dropout: float = 0.3,
                 gate_hidden: int = 16, text_hidden: int = 256, text_layers: int = 1,
                 text_init: str | None = None, speaker_gate: bool = False,
                 visual_names: list[str] | None = None):
        super().__init__(spec)
        classes = spec.heads["logits"]
        self.modalities = list(spec.dims)
        self.branches = nn.ModuleDict({
            m: Branch(d, classes, text_hidden if m == "t" else hidden, text_layers if m == "t" else layers,
                      dropout)
            for m, d in spec.dims.items()})
        if text_init and "t" in self.branches:
            load_text_branch(text_init, self.branches["t"])
        self.speaker_gate = speaker_gate and "v" in spec.dims
        if self.speaker_gate:
            # the column names come with the data (the feature recipe of a `mmaffect extract` cache), so
            # the model needs no knowledge of how the visual vector is made
            needed = ("face_rate", "speaker_sync")
            if not visual_names or any(n not in visual_names for n in needed):
                raise ConfigError("speaker_gate needs visual_names: the names of the visual vector's columns, "
                                  "with face_rate and speaker_sync (the visual vector of `mmaffect extract` "
                                  "caches; `mmaffect train-analysis-model` passes them)")
            if spec.dims["v"] != len(visual_names):
                raise ConfigError(f"speaker_gate: the visual vector is {spec.dims['v']} wide but visual_names "
                                  f"names {len(visual_names)} columns")
            self._face_rate = list(visual_names).index("face_rate")
            self._sync = list(visual_names).index("speaker_sync")
            self.sync_slope = nn.Parameter(torch.tensor(5.0))
            self.sync_offset = nn.Parameter(torch.tensor(0.0))
        width = sum(spec.dims.values())
        self.gate = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, gate_hidden), nn.ReLU(),
                                  nn.Linear(gate_hidden, len(spec.dims)))

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        branch_logits = torch.stack([self.branches[m](batch[m]) for m in self.modalities], dim=1)  # (B, M, C)
        gate = self.gate(torch.cat([batch[m] for m in self.modalities], dim=-1))
        if self.speaker_gate:
            gate = gate + F.pad(self.visual_reliability(batch["v"]).log()[:, None],
                                (self.modalities.index("v"), len(self.modalities) - 1 - self.modalities.index("v")))
        relevance = torch.softmax(gate, dim=-1)
        fused = (relevance[..., None] * F.log_softmax(branch_logits, dim=-1)).sum(1)
        return {"logits": fused, "branch_logits": branch_logits, "relevance": relevance}

    def visual_reliability(self, v: Tensor) -> Tensor:
        """How much the visual evidence can be trusted: the fraction of frames with a face times how
        much the visible mouth moves with the voice (``speaker_sync``; low when the face on screen is
        the listener). Read from the raw columns, so run with ``standardize: [a]`` or ``[]`` for v."""
        sync = torch.sigmoid(self.sync_slope * (v[:, self._sync] - self.sync_offset))
        return (v[:, self._face_rate].clamp(0, 1) * sync).clamp(min=1e-4)

    def extra_losses(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        logits = outputs["branch_logits"]
        target = batch["label"][:, None].expand(-1, logits.shape[1])
        return {"branch": F.cross_entropy(logits.flatten(0, 1), target.flatten())}
