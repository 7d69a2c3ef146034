"""SemanticMAC (seed 003, "End-to-end Semantic-centric Video-based Multimodal Affective Computing").

Per modality an embedding to the common width; audio and video pass an Affective Perceiver
(learnable tokens reading the frame sequence), text a small transformer encoder (the language-model
branch). SGFI (stacks of gated bridge attention layers) gives each modality a semantic-*specific*
representation (it attends to itself) and a semantic-*shared* one (it attends to the other
modalities). Five heads predict from the fused vector (m), the shared mean (c) and each specific
vector (t, a, v); the four auxiliary heads learn from kNN pseudo labels (SCLG, refreshed at the end
of every epoch) and two contrastive terms (SCCL) shape the representations.
Choices and their reasons: docs/models/semanticmac.md.
"""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmaffect.errors import ConfigError
from mmaffect.features.text import PACKAGED_TOKENIZER, model_source
from mmaffect.losses import info_nce_pairs, per_sample_loss, same_class, supcon_loss, truth_targets
from mmaffect.models.base import AffectModel, ModelSpec
from mmaffect.models.blocks import (
    AttentionBlock,
    GatedBridgeStack,
    KNNPseudoLabels,
    MLPHeads,
    PerceiverResampler,
    as_sequence,
    masked_mean,
)
from mmaffect.models.registry import register_model

TEXT = "t"
TEXT_ENCODERS = ("local", "minilm")
# the paper's learning rate for the fine-tuned language model (Table II, MOSI row)
LM_LR = 4e-5


def sinusoidal_positions(length: int, dim: int) -> Tensor:
    """Fixed (length, dim) position code: the text branch has no length cap to size a learned table."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    code = torch.zeros(length, dim)
    code[:, 0::2] = torch.sin(position * freq)
    code[:, 1::2] = torch.cos(position * freq[: dim // 2])
    return code


class TextEncoder(nn.Module):
    """The text branch's stand-in for a fine-tuned language model: a small pre-LN transformer over
    the text steps (a single step for vector-only datasets). Kept as one module so it can have its own
    parameter group (``text_lr``)."""

    def __init__(self, in_dim: int, dim: int, heads: int, layers: int, dropout: float):
        super().__init__()
        self.embed = nn.Linear(in_dim, dim)
        self.layers = nn.ModuleList(AttentionBlock(dim, heads, dropout) for _ in range(layers))

    def forward(self, seq: Tensor, mask: Tensor) -> Tensor:
        x = self.embed(seq) + sinusoidal_positions(seq.shape[1], self.embed.out_features).to(seq)
        for layer in self.layers:
            x = layer(x, x, mask)
        return x


class MiniLMTextEncoder(nn.Module):
    """The text branch as the paper has it, a fine-tuned language model, on CPU: the packaged
    all-MiniLM-L6-v2 over the row's word pieces (the engine's token batches), its last token states
    projected to the common width. Without BERT's [CLS] pooler, which the branch never reads (every
    weight must get a gradient)."""

    def __init__(self, dim: int):
        super().__init__()
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self.encoder = AutoModel.from_pretrained(model_source(PACKAGED_TOKENIZER))
        self.encoder.pooler = None
        self.project = nn.Linear(int(self.encoder.config.hidden_size), dim)

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        return self.project(self.encoder(input_ids=ids, attention_mask=mask.long()).last_hidden_state)


# Training recipe from the paper's MOSI row of Table II (20 epochs, batch 32, AdamW, lr 5e-4 for the
# non-LM parameters, weight decay 5e-4, constant schedule, 1 warm-up epoch) and the SCCL weights
# lambda_1 = lambda_2 = 0.1 [A]. Other datasets: override with --set train.* (Table II in the card).
@register_model("semanticmac", description="SemanticMAC: affective perceiver, gated bridge attention "
                "(specific/shared), kNN pseudo labels, contrastive learning (seed 003)",
                train_defaults={"optimizer": "adamw", "lr": 5e-4, "weight_decay": 5e-4, "batch_size": 32,
                                "epochs": 20, "warmup_epochs": 1,
                                "loss_weights": {"sccl_intra": 0.1, "sccl_inter": 0.1}})
class SemanticMAC(AffectModel):
    """Reads sequences where the dataset has them (``"sequences?"``), else each vector as one step;
    with ``text_encoder=minilm`` also the MiniLM token ids of the text.

    Args (``model_args``), every component a switch:

    - perceiver: ``tokens``, ``perceiver_layers``, ``max_frames``, ``frame_embedding``, ``perceiver_norm``,
      ``perceiver_residual``;
    - SGFI: ``sgfi_layers``, ``bridges``, ``modality_embedding``, ``multi_query``, ``bridge``,
      ``gate`` (relu | reglu | none);
    - heads and labels: ``multitask`` (the four auxiliary heads), ``sclg`` (pseudo labels; off = the
      auxiliary heads learn y_m), ``knn``, ``gamma``, ``start_epoch``, ``momentum`` (epoch | constant |
      none), ``beta``;
    - SCCL: ``sccl`` (both terms), ``intra``, ``inter``, ``tau_intra``, ``tau_inter``,
      ``contrast_classes`` (sign | three | seven, for scores), ``normaliser`` (positives | batch);
    - text branch: ``text_encoder`` (``local``: a small transformer trained from scratch over the
      text steps, ``text_layers`` deep; ``minilm``: the packaged MiniLM fine-tuned on token ids, at
      most ``max_tokens`` word pieces), ``text_lr`` (the text branch's own learning rate; None = the
      common one for ``local``, the paper's 4e-5 for ``minilm``).
    """

    needs = frozenset({"vectors", "sequences?"})

    def __init__(self, spec: ModelSpec, *, dim: int = 128, heads: int = 4, dropout: float = 0.1,
                 tokens: int = 8, perceiver_layers: int = 2, max_frames: int = 64, frame_embedding: bool = True,
                 perceiver_norm: bool = True, perceiver_residual: bool = True, text_layers: int = 1,
                 sgfi_layers: int = 2, bridges: int = 4, modality_embedding: bool = True, multi_query: bool = True,
                 bridge: bool = True, gate: str = "relu", multitask: bool = True, sclg: bool = True, knn: int = 10,
                 gamma: float = 2.0, start_epoch: int = 1, momentum: str = "epoch", beta: float = 0.9,
                 sccl: bool = True, intra: bool = True, inter: bool = True, tau_intra: float = 0.1,
                 tau_inter: float = 0.07, contrast_classes: str = "sign", normaliser: str = "positives",
                 score_loss: str = "l1", text_encoder: str = "local", max_tokens: int = 64,
                 text_lr: float | None = None):
        super().__init__(spec)
        if text_encoder not in TEXT_ENCODERS:
            raise ConfigError(f"model_args.text_encoder must be one of {', '.join(TEXT_ENCODERS)}, "
                              f"not {text_encoder!r}")
        self.modalities = list(spec.dims)
        self.shared = len(self.modalities) > 1
        self.use_intra = sccl and intra and self.shared
        self.use_inter = sccl and inter
        self.contrast_classes, self.normaliser, self.score_loss = contrast_classes, normaliser, score_loss
        self.tau_intra, self.tau_inter = tau_intra, tau_inter
        width = {m: spec.seq_dims.get(m, d) for m, d in spec.dims.items()}
        self.tokens = TEXT in spec.dims and text_encoder == "minilm"
        if self.tokens:
            self.needs = frozenset({"vectors", "sequences?", "tokens"})
            self.tokenizer, self.max_tokens = PACKAGED_TOKENIZER, max_tokens
            self.text = MiniLMTextEncoder(dim)
            self.text_lr = LM_LR if text_lr is None else text_lr
        else:
            self.text = TextEncoder(width[TEXT], dim, heads, text_layers, dropout) if TEXT in spec.dims else None
            self.text_lr = text_lr
        self.frame_in = nn.ModuleDict({m: nn.Linear(width[m], dim) for m in self.modalities if m != TEXT})
        self.perceivers = nn.ModuleDict({
            m: PerceiverResampler(dim, tokens, perceiver_layers, heads, dropout, max_frames=max_frames,
                                  frame_embedding=frame_embedding, layer_norm=perceiver_norm,
                                  residual=perceiver_residual)
            for m in self.modalities if m != TEXT})
        self.modality_embedding = (nn.Parameter(torch.randn(len(self.modalities), dim) * 0.02)
                                   if modality_embedding else None)
        gba = {"bridges": bridges, "multi_query": multi_query, "bridge": bridge, "gate": gate}
        self.specific = nn.ModuleDict({m: GatedBridgeStack(dim, heads, sgfi_layers, dropout, **gba)
                                       for m in self.modalities})
        self.shared_sgfi = GatedBridgeStack(dim, heads, sgfi_layers, dropout, **gba) if self.shared else None
        pooled = len(self.modalities) * (2 if self.shared else 1)
        self.fuse = nn.Linear(pooled * dim, dim)
        self.heads = MLPHeads(dim, spec.heads, dim // 2, dropout)
        self.subtasks = ((["c"] if self.shared else []) + self.modalities) if multitask else []
        self.sub_heads = nn.ModuleDict({s: MLPHeads(dim, spec.heads, dim // 2, dropout) for s in self.subtasks})
        self.sclg = (KNNPseudoLabels(self.subtasks, spec.heads, k=knn, gamma=gamma, start_epoch=start_epoch,
                                     schedule=momentum, beta=beta) if multitask and sclg else None)

    def _embed(self, batch: dict[str, Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """``H_m`` (B, L_m, d) and masks: text steps through the text branch, frames through a perceiver."""
        hs, masks = [], []
        for i, m in enumerate(self.modalities):
            if m == TEXT and self.tokens:
                mask = batch["t_tokens_mask"]
                h = self.text(batch["t_tokens"], mask)
            elif m == TEXT:
                seq, mask = as_sequence(batch, m)
                h = self.text(seq, mask)
            else:
                seq, mask = as_sequence(batch, m)
                h = self.perceivers[m](self.frame_in[m](seq), mask)
                mask = torch.ones(h.shape[:2], dtype=torch.bool, device=h.device)
            if self.modality_embedding is not None:
                h = h + self.modality_embedding[i]
            hs.append(h)
            masks.append(mask)
        return hs, masks

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        hs, masks = self._embed(batch)
        out: dict[str, Tensor] = {}
        specific, shared = [], []
        for i, m in enumerate(self.modalities):
            s = masked_mean(self.specific[m](hs[i], hs[i], masks[i], masks[i]), masks[i])
            out[f"rep_{m}"] = s
            specific.append(s)
            if self.shared:
                others = [j for j in range(len(hs)) if j != i]
                context = torch.cat([hs[j] for j in others], 1)
                context_mask = torch.cat([masks[j] for j in others], 1)
                c = masked_mean(self.shared_sgfi(hs[i], context, masks[i], context_mask), masks[i])
                out[f"shared_{m}"] = c
                shared.append(c)
        fused = self.fuse(torch.cat(specific + shared, -1))
        out["rep_m"] = fused
        if self.shared:
            out["rep_c"] = torch.stack(shared).mean(0)
        out |= self.heads(fused)
        for s in self.subtasks:
            for head, value in self.sub_heads[s](out[f"rep_{s}"]).items():
                out[f"sub_{s}_{head}"] = value
        return out

    def extra_losses(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        terms: dict[str, Tensor] = {}
        truth = truth_targets(batch, self.spec.heads) if self.subtasks else {}
        for s in self.subtasks:
            loss = 0.0
            for head, target in truth.items():
                if self.sclg is not None:
                    target = self.sclg.targets(s, head, batch["index"], target)
                loss = loss + per_sample_loss(head, outputs[f"sub_{s}_{head}"], target, self.score_loss).mean()
            terms[f"subtask_{s}"] = loss
        if self.use_intra:
            terms["sccl_intra"] = self._intra(outputs)
        if self.use_inter:
            terms["sccl_inter"] = supcon_loss(outputs["rep_m"], same_class(batch, self.contrast_classes),
                                              self.tau_inter, self.normaliser)
        return terms

    def _intra(self, outputs: dict[str, Tensor]) -> Tensor:
        """Inside each sample: shared vectors of two modalities are positives; (specific, shared of the
        same modality) and (specific, specific) pairs are the negatives."""
        spec = {m: F.normalize(outputs[f"rep_{m}"], dim=-1) for m in self.modalities}
        shar = {m: F.normalize(outputs[f"shared_{m}"], dim=-1) for m in self.modalities}
        pairs = list(combinations(self.modalities, 2))
        pos = torch.stack([(shar[a] * shar[b]).sum(-1) for a, b in pairs], 1)
        neg = torch.stack([(spec[m] * shar[m]).sum(-1) for m in self.modalities]
                          + [(spec[a] * spec[b]).sum(-1) for a, b in pairs], 1)
        return info_nce_pairs(pos / self.tau_intra, neg / self.tau_intra)

    def param_groups(self, cfg) -> list[dict]:
        """The text branch gets ``text_lr`` when set (a fine-tuned language model wants a lower rate):
        the whole local encoder, or MiniLM's pretrained weights (its new projection learns at the
        common rate)."""
        branch = self.text.encoder if self.tokens else self.text
        text = [p for p in branch.parameters() if p.requires_grad] if branch is not None else []
        if self.text_lr is None or not text:
            return [{"params": [p for p in self.parameters() if p.requires_grad]}]
        ids = {id(p) for p in text}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in ids]
        return [{"params": text, "lr": self.text_lr}, {"params": rest}]

    @torch.no_grad()
    def on_epoch_end(self, state) -> None:
        """SCLG: refresh every sub-task's pseudo labels from an eval pass over the training rows."""
        if self.sclg is None or state.epoch < self.sclg.start_epoch:
            return
        rows = np.asarray(state.train_rows)
        outputs = state.outputs(rows)
        index = torch.as_tensor(rows)
        targets = {k: getattr(state.data, k)[index] for k in ("score", "label", "labels")
                   if getattr(state.data, k, None) is not None}
        self.sclg.update(state.epoch, {s: outputs[f"rep_{s}"] for s in self.subtasks},
                         truth_targets(targets, self.spec.heads), index, len(state.data))
