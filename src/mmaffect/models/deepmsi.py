"""DeepMSI-MER (seed 002, "A Novel Approach for Multimodal Emotion Recognition: Multimodal semantic
information fusion"): text+audio semantics guide which visual tokens are kept (visual sequence
compression, VSC), a TCN models the kept frames, and a supervised cross-modal contrastive loss pulls
video projections towards same-label text and audio projections, next to cross-entropy.

SEEDS_SPEC §3 rebuilds the lost equations from the prose and the authors' code; this file follows
it, with one CPU adaptation the issue asks for: VSC works on the *frame-level* visual tokens (one
per sampled frame) instead of inside a Swin backbone's patch grid, since the trainer provides
per-frame visual descriptors, not pixels. Inputs are sequences where a modality has them, else its
utterance vector as one step (``needs`` ``"sequences?"``): on vector-only data the video is one
token, which VSC keeps and the TCN reads as one step. Choices and measured numbers: docs/models/deepmsi.md.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmaffect.errors import ConfigError
from mmaffect.losses import same_class
from mmaffect.models.base import AffectModel, Heads, ModelSpec
from mmaffect.models.blocks import as_sequence
from mmaffect.models.blocks.tcn import TCN
from mmaffect.models.registry import register_model

MERGES = ("off", "argmax")


def cross_modal_supcon(anchor: Tensor, contrast: Tensor, same: Tensor, temperature: float = 0.5) -> Tensor:
    """DeepMSI-MER eq. 5 between video anchors and text (or audio) features, both (B, d).

    ``s_ij = norm(anchor_i) · norm(contrast_j) / τ``; positives: same label, ``j != i``; negatives:
    other labels. Each positive pair competes with the anchor's negatives only:
    ``ℓ_ij = -log(e^{s_ij} / (e^{s_ij} + Σ_{k neg} e^{s_ik}))``; row loss ``Σ_{j pos} ℓ_ij / (B - 1)``
    (the paper's normaliser, not the number of positives); the loss is the mean over all B rows, so a
    row without positives adds 0. With no negatives each ``ℓ_ij`` is 0 (``-log 1``).

    The existing :func:`mmaffect.losses.supcon_loss` contrasts one feature set with itself and puts
    every other sample in the denominator; this loss differs in both, hence its own function.
    """
    b = anchor.shape[0]
    sims = F.normalize(anchor, dim=-1) @ F.normalize(contrast, dim=-1).T / temperature
    eye = torch.eye(b, dtype=torch.bool, device=sims.device)
    pos, neg = same & ~eye, ~same
    neg_sum = torch.logsumexp(sims.masked_fill(~neg, float("-inf")), dim=1, keepdim=True)  # -inf: no negatives
    per_pair = torch.logaddexp(sims, neg_sum) - sims  # -log(e^s / (e^s + Σ_neg e^s'))
    rows = (per_pair * pos).sum(1) / max(b - 1, 1)
    return rows.mean()


class ProjectionHead(nn.Module):
    """``p = Linear(x)``, ``u = LayerNorm(p + Dropout(Linear(GELU(p))))`` [C]."""

    def __init__(self, in_dim: int, out_dim: int, dropout: float = 0.2):
        super().__init__()
        self.project = nn.Linear(in_dim, out_dim)
        self.fc = nn.Linear(out_dim, out_dim)
        self.drop = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, x: Tensor) -> Tensor:
        p = self.project(x)
        return self.norm(p + self.drop(self.fc(F.gelu(p))))


class VisualCompression(nn.Module):
    """VSC (eqs. 1-3) on ``(B, L, D)`` tokens with a guide vector ``h`` (B, D).

    1. ``v`` = mean of the real tokens; eq. 1 ``f = v + h`` (``lam=None``, as released) or
       ``λ h + (1 - λ) v``.
    2. eq. 2: relevance ``s = softmax_l(cos(f, z_l))`` over real tokens (f and Z L2-normalised, no
       temperature, as released).
    3. keep the top ``count`` tokens of each row (at least 1, at most its real tokens), in time order.
    4. eq. 3 (``merge="argmax"``): each dropped token i with ``max_j cos(z_i, z_j^R) > η`` is merged into
       its most similar kept token p: ``z_p <- α z_p + (1 - α) mean_i θ_ip z_i``,
       ``θ_i· = softmax_j cos(z_i, z_j^R)``; ``merge="off"`` is the released code's pruning only.
    5. LayerNorm.

    Top-k is not differentiable, so in the released code the guide vector gets no gradient at all.
    ``straight_through=True`` [A] multiplies each kept token by ``1 + g - stop_grad(g)`` with ``g = n s_l``
    -- the forward pass is unchanged, the backward pass tells the relevance (and the text+audio MLP
    behind it) which kept tokens helped.

    Returns the compacted tokens ``(B, K, D)`` (K = the largest kept count), their mask and ``s``.
    """

    def __init__(self, dim: int, merge: str = "argmax", lam: float | None = None, alpha: float = 0.9,
                 eta: float = 0.6, straight_through: bool = True):
        super().__init__()
        self.merge, self.lam, self.alpha, self.eta = merge, lam, alpha, eta
        self.straight_through = straight_through
        self.norm = nn.LayerNorm(dim)

    def relevance(self, z: Tensor, mask: Tensor, h: Tensor) -> Tensor:
        w = mask.to(z.dtype)[..., None]
        v = (z * w).sum(1) / w.sum(1).clamp(min=1.0)
        f = v + h if self.lam is None else self.lam * h + (1 - self.lam) * v
        cos = torch.einsum("bd,bld->bl", F.normalize(f, dim=-1), F.normalize(z, dim=-1))
        return cos.masked_fill(~mask, float("-inf")).softmax(-1)

    def forward(self, z: Tensor, mask: Tensor, h: Tensor, count: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        b, steps, _ = z.shape
        s = self.relevance(z, mask, h)
        k = torch.minimum(count.clamp(min=1), mask.sum(1).clamp(min=1))
        rank = torch.empty_like(s, dtype=torch.long)
        order = s.masked_fill(~mask, -1.0).argsort(1, descending=True)
        rank.scatter_(1, order, torch.arange(steps, device=z.device).expand(b, -1))
        kept = (rank < k[:, None]) & mask
        if self.merge == "argmax":
            z = self._merge(z, kept, mask & ~kept)
        position = torch.arange(steps, device=z.device)[None, :]
        compact = (position + steps * (~kept).long()).argsort(1)[:, :int(k.max())]  # kept first, time order
        tokens = torch.gather(z, 1, compact[..., None].expand(-1, -1, z.shape[-1]))
        new_mask = torch.gather(kept, 1, compact)
        if self.straight_through:  # forward unchanged; backward reaches s, hence f and the guide h
            gate = torch.gather(s * mask.sum(1, keepdim=True), 1, compact)[..., None]
            tokens = tokens * (1.0 + gate - gate.detach())
        return self.norm(tokens) * new_mask[..., None].to(z.dtype), new_mask, s

    def _merge(self, z: Tensor, kept: Tensor, dropped: Tensor) -> Tensor:
        zn = F.normalize(z, dim=-1)
        cos = (zn @ zn.transpose(1, 2)).masked_fill(~kept[:, None, :], float("-inf"))  # (B, i, j): j kept
        best, target = cos.max(-1)  # per token i: most similar kept token
        theta = torch.nan_to_num(cos.softmax(-1), nan=0.0).gather(-1, target[..., None]).squeeze(-1)
        merge = dropped & (best > self.eta)
        weight = (theta * merge.to(z.dtype))[..., None]  # (B, L, 1)
        assign = F.one_hot(target, z.shape[1]).to(z.dtype) * merge[..., None].to(z.dtype)  # (B, i, j)
        summed = assign.transpose(1, 2) @ (weight * z)  # (B, j, D)
        count = assign.sum(1)[..., None]  # (B, j, 1)
        merged = self.alpha * z + (1 - self.alpha) * summed / count.clamp(min=1.0)
        return torch.where(count > 0, merged, z)


class TokenBlock(nn.Module):
    """Per-frame token MLP with a residual (``x + MLP(LN(x))``): the CPU stand-in for the Swin blocks
    between which VSC runs; frames do not mix here -- the TCN does that."""

    def __init__(self, dim: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(2 * dim, dim))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.net(x)


def _classifier(in_dim: int, widths: tuple[int, ...], dropout: float) -> tuple[nn.Sequential, int]:
    layers = []
    for w in widths:
        layers += [nn.Linear(in_dim, w), nn.BatchNorm1d(w), nn.LeakyReLU(0.01), nn.Dropout(dropout)]
        in_dim = w
    return nn.Sequential(*layers), in_dim


@register_model("deepmsi-mer", description="DeepMSI-MER: text+audio-guided visual token compression, TCN, "
                "supervised cross-modal contrastive + CE (seed 002)",
                train_defaults={"lr": 5e-5, "weight_decay": 1e-5, "batch_size": 16, "epochs": 30, "patience": 4,
                                "select": "f1_weighted", "loss_weights": {"con": 0.5}})
class DeepMSIMER(AffectModel):
    """Args (``model_args``):
        token_dim: width of the visual tokens and of the guide vector (Swin stage 3: 384 [C]).
        guide_hidden: hidden width of the text+audio MLP (512 [C]).
        keep_ratios: tokens kept after each VSC stage, as fractions of the original count
            (196/256, 144/256, 100/256 [C]).
        vsc: off = no compression (ablation "no VSC").
        vsc_merge: ``argmax`` (paper, eq. 3) or ``off`` (the released code's pruning only).
        guide_grad: straight-through gradient from the kept tokens into the relevance and the guide MLP
            [A]; off = the released behaviour, where the guide MLP never receives a gradient.
        lam: eq. 1 weight (None = the released plain sum ``v + h``); merge_alpha α, merge_eta η.
        tcn_channels, tcn_kernel: the TCN (dilations 1, 2, 4, ...); proj_dim: projection width (256).
        classifier: hidden widths of the fused classifier (512, 256, 128).
        contrastive: the supervised contrastive loss (off = ablation); contrast_audio: also L_VA
            (released: ``(L_VT + L_VA) / 2``); temperature τ (0.5).
        dropout: classifier and guide MLP (0.3); proj_dropout (0.2); tcn_dropout (0.3).
    """

    needs = frozenset({"vectors", "sequences?"})

    def __init__(self, spec: ModelSpec, *, token_dim: int = 128, guide_hidden: int = 256,
                 keep_ratios: tuple[float, ...] = (0.77, 0.56, 0.39), vsc: bool = True, vsc_merge: str = "argmax",
                 lam: float | None = None, merge_alpha: float = 0.9, merge_eta: float = 0.6,
                 tcn_channels: tuple[int, ...] = (128, 128, 128), tcn_kernel: int = 3, proj_dim: int = 256,
                 classifier: tuple[int, ...] = (512, 256, 128), contrastive: bool = True,
                 contrast_audio: bool = True, temperature: float = 0.5, dropout: float = 0.3,
                 proj_dropout: float = 0.2, tcn_dropout: float = 0.3, contrast_classes: str = "sign",
                 guide_grad: bool = True):
        super().__init__(spec)
        if vsc_merge not in MERGES:
            raise ConfigError(f"deepmsi-mer: vsc_merge must be one of {', '.join(MERGES)}, not {vsc_merge!r}")
        if any(not 0 < r <= 1 for r in keep_ratios):
            raise ConfigError(f"deepmsi-mer: keep_ratios must lie in (0, 1], got {keep_ratios}")
        self.modalities = [m for m in ("t", "a", "v") if m in spec.dims]
        self.has_video = "v" in spec.dims
        self.guides = [m for m in ("t", "a") if m in spec.dims]
        self.keep_ratios = tuple(keep_ratios) if vsc else ()
        self.use_con = contrastive and self.has_video and bool(self.guides)
        self.contrast_audio, self.temperature, self.contrast_classes = contrast_audio, temperature, contrast_classes
        if self.has_video:
            if self.guides:
                self.guide = nn.Sequential(
                    nn.Linear(sum(spec.dims[m] for m in self.guides), guide_hidden), nn.BatchNorm1d(guide_hidden),
                    nn.LeakyReLU(0.01), nn.Dropout(dropout), nn.Linear(guide_hidden, token_dim))
            self.embed = nn.Linear(spec.seq_dims.get("v", spec.dims["v"]), token_dim)
            self.blocks = nn.ModuleList(TokenBlock(token_dim, dropout) for _ in self.keep_ratios)
            self.vsc = nn.ModuleList(VisualCompression(token_dim, vsc_merge, lam, merge_alpha, merge_eta, guide_grad)
                                     for _ in self.keep_ratios)
            self.tcn = TCN(token_dim, tuple(tcn_channels), tcn_kernel, tcn_dropout)
        widths = {"t": spec.dims.get("t"), "a": spec.dims.get("a"), "v": self.tcn.out_dim if self.has_video else None}
        self.project = nn.ModuleDict({m: ProjectionHead(widths[m], proj_dim, proj_dropout) for m in self.modalities})
        self.classifier, out = _classifier(proj_dim * len(self.modalities), tuple(classifier), dropout)
        self.heads = Heads(out, spec.heads)

    def video(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """The video vector (last TCN step over the kept frames) and the relevance of each stage."""
        seq, mask = as_sequence(batch, "v")
        z = self.embed(seq)
        if self.guides:
            h = self.guide(torch.cat([batch[m] for m in self.guides], -1))
        else:
            h = z.new_zeros(z.shape[0], z.shape[-1])
        original = mask.sum(1).float()
        extras = {}
        for i, (block, vsc) in enumerate(zip(self.blocks, self.vsc, strict=True)):
            z = block(z) * mask[..., None].to(z.dtype)
            # keep ratios count against the original number of frames, as the paper's 196/144/100 of 256
            z, mask, s = vsc(z, mask, h, torch.ceil(self.keep_ratios[i] * original).long())
            extras[f"relevance_{i}"] = s
        return self.tcn(z, mask), extras

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        reps = {}
        for m in self.modalities:
            if m == "v":
                vector, extras = self.video(batch)
                out |= extras
            else:
                vector = batch[m]
            reps[m] = self.project[m](vector)
            out[f"proj_{m}"] = reps[m]
        fused = self.classifier(torch.cat([reps[m] for m in self.modalities], -1))
        return out | self.heads(fused)

    def extra_losses(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """``con`` = mean of L_VT and L_VA (eq. 5) over the guide modalities present."""
        if not self.use_con:
            return {}
        same = same_class(batch, self.contrast_classes)
        partners = [m for m in self.guides if m == "t" or self.contrast_audio]
        if not partners:
            return {}
        terms = [cross_modal_supcon(outputs["proj_v"], outputs[f"proj_{m}"], same, self.temperature)
                 for m in partners]
        return {"con": sum(terms) / len(terms)}

