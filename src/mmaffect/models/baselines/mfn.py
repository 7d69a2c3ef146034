"""MFN, Memory Fusion Network (Zadeh et al., AAAI 2018).

One LSTM cell per modality steps through the (time-aligned) sequences. At every step the
Delta-memory Attention Network looks at the cell states of the previous and the current step of all
modalities together, ``c* = [c_{t-1}; c_t]``, weights them with a softmax attention, and proposes a
memory update ``ĉ = tanh(MLP(a ⊙ c*))``; the Multi-view Gated Memory keeps
``u_t = γ1 ⊙ u_{t-1} + γ2 ⊙ ĉ`` with retain/update gates ``γ = σ(MLP([a ⊙ c*; u_{t-1}]))``. The
prediction reads the last hidden states and the memory.

Differences from MMSA's MFN, on purpose: unaligned modalities are resampled onto one grid per row
(:func:`common_grid`; MMSA needs word-aligned data), padded steps leave every state unchanged (MMSA
pads and steps through the padding), and any modality subset works (ablations).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mmaffect.models.base import Heads, ModelSpec
from mmaffect.models.baselines.zoo_common import ZOO_SCHEDULE, ZooModel, common_grid
from mmaffect.models.registry import register_model


def gate_mlp(in_dim: int, hidden: int, out_dim: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, out_dim))


class GatedMemory(nn.Module):
    """MFN's Multi-view Gated Memory: ``u = γ1 ⊙ u + γ2 ⊙ tanh(MLP(x))``, ``γ_i = σ(MLP_i([x; u]))``."""

    def __init__(self, in_dim: int, mem_dim: int, hidden: int, dropout: float):
        super().__init__()
        self.propose = gate_mlp(in_dim, hidden, mem_dim, dropout)
        self.retain = gate_mlp(in_dim + mem_dim, hidden, mem_dim, dropout)
        self.update = gate_mlp(in_dim + mem_dim, hidden, mem_dim, dropout)

    def forward(self, x: Tensor, memory: Tensor) -> Tensor:
        both = torch.cat([x, memory], dim=-1)
        proposal = torch.tanh(self.propose(x))
        return torch.sigmoid(self.retain(both)) * memory + torch.sigmoid(self.update(both)) * proposal


class RecurrentMemoryFusion(ZooModel):
    """The recurrence MFN and Graph-MFN share; subclasses define the per-step fusion
    :meth:`fuse` (output width ``fused_dim``) of the previous and current per-modality states."""

    def __init__(self, spec: ModelSpec, *, fused_dim: int, hidden: int, mem_dim: int, gate_hidden: int,
                 dropout: float, out_hidden: int, out_dropout: float, sequences: bool):
        super().__init__(spec, sequences)
        self.hidden = hidden
        self.cells = nn.ModuleDict({m: nn.LSTMCell(self.step_dims[m], hidden) for m in self.modalities})
        self.memory = GatedMemory(fused_dim, mem_dim, gate_hidden, dropout)
        self.mem_dim = mem_dim
        width = hidden * len(self.modalities) + mem_dim
        self.out = nn.Sequential(nn.Linear(width, out_hidden), nn.ReLU(), nn.Dropout(out_dropout))
        self.heads = Heads(out_hidden, spec.heads)

    def fuse(self, prev: dict[str, tuple[Tensor, Tensor]], new: dict[str, tuple[Tensor, Tensor]]
             ) -> tuple[Tensor, Tensor | None]:
        """``(fused (B, fused_dim), per-step diagnostics or None)`` from ``{m: (h, c)}`` before and after."""
        raise NotImplementedError

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        steps = [self.steps(batch, m) for m in self.modalities]
        seqs, mask = common_grid([s for s, _ in steps], [k for _, k in steps])
        size = mask.shape[0]
        zeros = seqs[0].new_zeros(size, self.hidden)
        state = {m: (zeros, zeros) for m in self.modalities}
        memory = seqs[0].new_zeros(size, self.mem_dim)
        diagnostics = []
        for t in range(mask.shape[1]):
            new = {m: self.cells[m](x[:, t], state[m]) for m, x in zip(self.modalities, seqs, strict=True)}
            fused, diag = self.fuse(state, new)
            real = mask[:, t, None]
            memory = torch.where(real, self.memory(fused, memory), memory)
            state = {m: (torch.where(real, new[m][0], state[m][0]), torch.where(real, new[m][1], state[m][1]))
                     for m in self.modalities}
            if diag is not None:
                diagnostics.append(diag * real)
        features = self.out(torch.cat([state[m][0] for m in self.modalities] + [memory], dim=-1))
        out = {**self.heads(features), "features": features}
        if diagnostics:  # mean over the real steps: (B, E) whatever the batch's length
            out["efficacies"] = torch.stack(diagnostics, 1).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        return out


@register_model("mfn", description="Memory Fusion Network: LSTM per modality, delta-memory attention, gated memory",
                train_defaults={"batch_size": 64, "lr": 2e-3, **ZOO_SCHEDULE})
class MFN(RecurrentMemoryFusion):
    def __init__(self, spec: ModelSpec, *, hidden: int = 64, mem_dim: int = 128, attention_hidden: int = 64,
                 gate_hidden: int = 64, dropout: float = 0.3, out_hidden: int = 64, out_dropout: float = 0.2,
                 sequences: bool = True):
        fused_dim = 2 * hidden * len(spec.dims)
        super().__init__(spec, fused_dim=fused_dim, hidden=hidden, mem_dim=mem_dim, gate_hidden=gate_hidden,
                         dropout=dropout, out_hidden=out_hidden, out_dropout=out_dropout, sequences=sequences)
        self.attention = gate_mlp(fused_dim, attention_hidden, fused_dim, dropout)

    def fuse(self, prev, new):
        cells = torch.cat([prev[m][1] for m in self.modalities] + [new[m][1] for m in self.modalities], dim=-1)
        return torch.softmax(self.attention(cells), dim=-1) * cells, None
