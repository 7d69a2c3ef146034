"""Graph-MFN (Zadeh et al., ACL 2018, with CMU-MOSEI): MFN with a Dynamic Fusion Graph.

Graph-MFN replaces MFN's delta-memory attention by the Dynamic Fusion Graph (DFG): one vertex per
non-empty subset of the modalities. A singleton vertex holds a modality's state
(``ReLU(W [h_{t-1}; h_t])``); the vertex of a larger subset S is a small network over all vertices of
the proper subsets of S, each multiplied by an *efficacy* ``α ∈ (0, 1)``; a final vertex τ reads every
vertex the same way and feeds MFN's gated memory. The efficacies are computed from the singletons at
each step, so the graph's shape (which interactions count) changes with the input; the model exposes
their mean over a row's steps as ``efficacies`` (B, E) for inspection (E = 19 for three modalities).

Ours follows the paper in squashing the efficacies with a sigmoid (MMSA leaves them unbounded) and
builds the graph for any number of modalities (MMSA's code fails for one).
"""

from __future__ import annotations

from itertools import combinations

import torch
from torch import Tensor, nn

from mmaffect.models.base import ModelSpec
from mmaffect.models.baselines.mfn import RecurrentMemoryFusion
from mmaffect.models.baselines.zoo_common import ZOO_SCHEDULE
from mmaffect.models.registry import register_model


def nonempty_subsets(items: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Non-empty subsets by size, then lexicographically: (0,), (1,), (2,), (0, 1), ..., (0, 1, 2)."""
    return [s for r in range(1, len(items) + 1) for s in combinations(items, r)]


class DynamicFusionGraph(nn.Module):
    """The DFG over ``len(in_dims)`` singleton inputs; returns ``(τ (B, node_dim), efficacies (B, E))``."""

    def __init__(self, in_dims: list[int], node_dim: int, efficacy_hidden: int):
        super().__init__()
        self.n = len(in_dims)
        everything = tuple(range(self.n))
        self.vertices = nonempty_subsets(everything)
        width = {(i,): d for i, d in enumerate(in_dims)} | {s: node_dim for s in self.vertices if len(s) > 1}
        # inputs of each multimodal vertex (its proper non-empty subsets) and of τ (every vertex)
        self.inputs = {s: nonempty_subsets(s)[:-1] for s in self.vertices if len(s) > 1}
        self.inputs[everything + (-1,)] = self.vertices  # τ
        self.nets = nn.ModuleDict({
            _key(s): nn.Sequential(nn.Linear(sum(width[i] for i in sources), node_dim), nn.ReLU())
            for s, sources in self.inputs.items()})
        self.n_efficacies = sum(len(sources) for sources in self.inputs.values())
        self.efficacy = nn.Sequential(nn.Linear(sum(in_dims), efficacy_hidden), nn.ReLU(),
                                      nn.Linear(efficacy_hidden, self.n_efficacies))

    def forward(self, singletons: list[Tensor]) -> tuple[Tensor, Tensor]:
        efficacies = torch.sigmoid(self.efficacy(torch.cat(singletons, dim=-1)))
        value = {(i,): x for i, x in enumerate(singletons)}
        k = 0
        for s, sources in self.inputs.items():  # by subset size, τ last: every input exists when needed
            weighted = [value[src] * efficacies[:, k + j, None] for j, src in enumerate(sources)]
            value[s] = self.nets[_key(s)](torch.cat(weighted, dim=-1))
            k += len(sources)
        return value[tuple(range(self.n)) + (-1,)], efficacies


def _key(subset: tuple[int, ...]) -> str:
    return "tau" if subset[-1] == -1 else "+".join(map(str, subset))


@register_model("graph-mfn", description="Graph-MFN: MFN whose fusion is a Dynamic Fusion Graph over modality subsets",
                train_defaults={"batch_size": 64, "lr": 2e-3, "weight_decay": 5e-3, **ZOO_SCHEDULE})
class GraphMFN(RecurrentMemoryFusion):
    def __init__(self, spec: ModelSpec, *, hidden: int = 64, node_dim: int = 64, mem_dim: int = 128,
                 efficacy_hidden: int = 64, gate_hidden: int = 64, dropout: float = 0.3, out_hidden: int = 64,
                 out_dropout: float = 0.2, sequences: bool = True):
        super().__init__(spec, fused_dim=node_dim, hidden=hidden, mem_dim=mem_dim, gate_hidden=gate_hidden,
                         dropout=dropout, out_hidden=out_hidden, out_dropout=out_dropout, sequences=sequences)
        self.singleton = nn.ModuleDict({m: nn.Linear(2 * hidden, hidden) for m in self.modalities})
        self.graph = DynamicFusionGraph([hidden] * len(self.modalities), node_dim, efficacy_hidden)

    def fuse(self, prev, new):
        singletons = [torch.relu(self.singleton[m](torch.cat([prev[m][0], new[m][0]], dim=-1)))
                      for m in self.modalities]
        return self.graph(singletons)
