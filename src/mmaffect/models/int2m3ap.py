"""INT2-M3AP (seed 000, "Metaphorical affective prediction integrating intra-class differences and
interclass associations"): three unimodal networks, a hierarchical bimodal -> trimodal fusion,
seven prediction heads trained jointly, and a majority vote over the unimodal and tri-modal heads.

The paper's text is garbled OCR; SEEDS_SPEC §1 reconstructs it and this file follows that
reconstruction (eqs. 17-25): image ``x_v = Dense_256(v)``, text ``r`` = final states of a two-layer
BiGRU (360 and 230 per direction), audio ``z`` = Dense 96 -> Dense 64; bimodal ``B_VT = Dense_100([x_v; r])``,
``B_VA = Dense_152([x_v; z])``, ``B_TA = Dense_76([r; z])``; trimodal ``Dense_50([B_VT; B_VA; B_TA])``;
each of the seven features gets its own linear head, and all seven losses are summed. Every choice
and the stand-in features are listed in docs/models/int2m3ap.md.

Inputs: the text BiGRU reads the text sequence where the dataset has one, else the text vector as a
one-step sequence (``needs`` ``"sequences?"``), so one name serves the clip cache and vector-only MOSI.
The image net reads the visual utterance vector (FER probabilities + face geometry, the frozen
"semantic" stand-in), or with ``image="crops"`` the cached 48x48 face crops through a small CNN.
"""

from __future__ import annotations

from itertools import combinations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from mmaffect.errors import ConfigError
from mmaffect.losses import per_sample_loss
from mmaffect.models.base import AffectModel, Heads, ModelSpec
from mmaffect.models.blocks import as_sequence, masked_mean
from mmaffect.models.blocks.voting import TIE_BREAKS, mean_probability, vote_distribution
from mmaffect.models.registry import register_model
from mmaffect.tasks import Task

BIMODAL_WIDTHS = {"vt": 100, "va": 152, "ta": 76}  # eqs. 18, 20, 22 (100 + 152 + 76 = 328, eq. 24)
FUSIONS = ("vote", "mean")
ACTIVATIONS = ("softmax", "sigmoid")
IMAGES = ("vector", "crops")


class FaceCropCNN(nn.Module):
    """The image net's CPU stand-in for VGG on face crops: per crop ``channels`` blocks of Conv 3x3 ->
    ReLU -> max-pool 2, global average pooling; a clip is the mean over its real frames (zeros for a
    clip without frames). Only real frames are convolved, so padding costs nothing."""

    def __init__(self, channels: tuple[int, ...] = (16, 32, 64)):
        super().__init__()
        layers: list[nn.Module] = []
        width = 1
        for c in channels:
            layers += [nn.Conv2d(width, c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            width = c
        self.net = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.out_dim = width

    def forward(self, frames: Tensor, mask: Tensor) -> Tensor:
        """``frames`` (B, T, H, W), ``mask`` (B, T) -> (B, out_dim)."""
        grid = frames.new_zeros(*mask.shape, self.out_dim)
        if mask.any():
            grid[mask] = self.net(frames[mask][:, None])
        return masked_mean(grid, mask)


class StackedBiGRU(nn.Module):
    """Two (or more) BiGRU layers of their own widths; returns both directions' final states of the
    last layer, ``(B, 2 * hidden[-1])``."""

    def __init__(self, in_dim: int, hidden: tuple[int, ...]):
        super().__init__()
        layers, width = [], in_dim
        for h in hidden:
            layers.append(nn.GRU(width, h, batch_first=True, bidirectional=True))
            width = 2 * h
        self.layers = nn.ModuleList(layers)
        self.out_dim = width

    def forward(self, seq: Tensor, mask: Tensor) -> Tensor:
        lengths = mask.sum(1).clamp(min=1).cpu()
        x = seq
        for i, gru in enumerate(self.layers):
            packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            out, h = gru(packed)
            if i < len(self.layers) - 1:
                x, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=seq.shape[1])
        return torch.cat([h[0], h[1]], -1)


def _pair_key(a: str, b: str) -> str:
    """The paper's pair name (vt, va, ta) for two modalities in any order."""
    for key in BIMODAL_WIDTHS:
        if set(key) == {a, b}:
            return key
    raise ValueError(f"no pair of {a} and {b}")


@register_model("int2-m3ap", description="INT2-M3AP: unimodal BiGRU/MLP/image nets, hierarchical bi->trimodal "
                "fusion, 7 heads, majority vote (seed 000)", heads=("score", "logits"),
                train_defaults={"lr": 1e-3, "batch_size": 32, "weight_decay": 1e-4, "epochs": 300, "patience": 30})
class INT2M3AP(AffectModel):
    """Args (``model_args``):
        fusion: the reported prediction -- ``"vote"`` (majority vote of ``voters``), ``"mean"`` (their
            mean probability), or one head's output: ``v``, ``t``, ``a``, ``vt``, ``va``, ``ta``, ``m``.
        voters: comma-separated heads that vote (paper: ``v,t,a,m``; the bimodal heads do not vote).
        tie_break: ``prob`` | ``priority`` | ``lowest`` (see :mod:`mmaffect.models.blocks.voting`);
            ``priority`` names the voter preferred in ties (default ``m``; the last voter when it does
            not vote).
        text_hidden: per-direction widths of the stacked BiGRU layers (paper: 360, 230).
        image_hidden, audio_hidden: image Dense width (256) and audio Dense widths (96, 64).
        fusion_hidden: the trimodal Dense width (50).
        output_activation: ``softmax`` (CE) or ``sigmoid`` (BCE on one-hot targets; the paper mentions a
            sigmoid output).
        dropout: after every hidden layer [A: the paper names none].
        score_loss: ``l1`` or ``mse`` for the score heads of regression tasks.
        image: ``vector`` (the visual utterance vector -> Dense_256) or ``crops`` (the face crops
            through :class:`FaceCropCNN` with ``image_channels`` -> Dense_256; needs a ``cache:`` dataset).

    Scores (regression tasks) have no majority; ``fusion="vote"`` then averages the voters' scores.
    """

    needs = frozenset({"vectors", "sequences?"})

    def __init__(self, spec: ModelSpec, *, fusion: str = "vote", voters: str = "v,t,a,m", tie_break: str = "prob",
                 priority: str = "m", text_hidden: tuple[int, ...] = (360, 230), image_hidden: int = 256,
                 audio_hidden: tuple[int, ...] = (96, 64), fusion_hidden: int = 50,
                 output_activation: str = "softmax", dropout: float = 0.2, score_loss: str = "l1",
                 image: str = "vector", image_channels: tuple[int, ...] = (16, 32, 64)):
        super().__init__(spec)
        if image not in IMAGES:
            raise ConfigError(f"int2-m3ap: image must be one of {', '.join(IMAGES)}, not {image!r}")
        self.modalities = [m for m in ("v", "t", "a") if m in spec.dims]
        heads = list(self.modalities) + [_pair_key(a, b) for a, b in combinations(self.modalities, 2)]
        if len(self.modalities) == 3:
            heads.append("m")
        self.head_names = heads
        self.voters = self._voters(voters)
        if fusion not in FUSIONS and fusion not in heads:
            raise ConfigError(f"int2-m3ap: fusion must be one of {', '.join(FUSIONS + tuple(heads))}, not {fusion!r}")
        if tie_break not in TIE_BREAKS:
            raise ConfigError(f"int2-m3ap: tie_break must be one of {', '.join(TIE_BREAKS)}, not {tie_break!r}")
        if output_activation not in ACTIVATIONS:
            raise ConfigError(f"int2-m3ap: output_activation must be softmax or sigmoid, not {output_activation!r}")
        priority = self._alias(priority)
        if priority not in ("v", "t", "a", "m") and priority not in BIMODAL_WIDTHS:
            raise ConfigError(f"int2-m3ap: unknown priority voter {priority!r}")
        self.fusion, self.tie_break, self.activation = fusion, tie_break, output_activation
        self.score_loss = score_loss
        # a priority head that does not vote (or is absent with fewer modalities): the last voter
        self.priority = self.voters.index(priority) if priority in self.voters else len(self.voters) - 1

        def dense(i: int, o: int) -> nn.Sequential:
            return nn.Sequential(nn.Linear(i, o), nn.ReLU(), nn.Dropout(dropout))

        encoders, widths = {}, {}
        self.image = image if "v" in spec.dims else "vector"
        if self.image == "crops":
            self.image_cnn = FaceCropCNN(tuple(image_channels))
            self.needs = type(self).needs | {"frames"}
        if "v" in spec.dims:
            image_in = self.image_cnn.out_dim if self.image == "crops" else spec.dims["v"]
            encoders["v"], widths["v"] = dense(image_in, image_hidden), image_hidden
        if "t" in spec.dims:
            gru = StackedBiGRU(spec.seq_dims.get("t", spec.dims["t"]), tuple(text_hidden))
            encoders["t"], widths["t"] = gru, gru.out_dim
        if "a" in spec.dims:
            layers, width = [], spec.dims["a"]
            for h in audio_hidden:
                layers.append(dense(width, h))
                width = h
            encoders["a"], widths["a"] = nn.Sequential(*layers), width
        self.encoders = nn.ModuleDict(encoders)
        self.bimodal = nn.ModuleDict({
            _pair_key(a, b): dense(widths[a] + widths[b], BIMODAL_WIDTHS[_pair_key(a, b)])
            for a, b in combinations(self.modalities, 2)})
        feature_widths = dict(widths) | {k: BIMODAL_WIDTHS[k] for k in self.bimodal}
        if "m" in heads:
            self.trimodal = dense(sum(BIMODAL_WIDTHS.values()), fusion_hidden)
            feature_widths["m"] = fusion_hidden
        self.heads = nn.ModuleDict({h: Heads(feature_widths[h], spec.heads) for h in heads})

    def _alias(self, name: str) -> str:
        """With two modalities the hierarchical head ``m`` is their bimodal head."""
        if name == "m" and "m" not in self.head_names and len(self.modalities) == 2:
            return _pair_key(*self.modalities)
        return name

    def _voters(self, voters: str) -> list[str]:
        names = []
        for raw in voters.split(","):
            name = self._alias(raw.strip())
            if name in self.head_names and name not in names:
                names.append(name)
            elif name not in ("v", "t", "a", "m") and name not in BIMODAL_WIDTHS:
                raise ConfigError(f"int2-m3ap: unknown voter {raw!r}; heads are {', '.join(self.head_names)}")
        if not names:
            raise ConfigError(f"int2-m3ap: none of the voters {voters!r} exists with modalities {self.modalities}")
        return names

    def features(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """The seven features: x_v, r, z, B_VT, B_VA, B_TA and the trimodal Dense_50 output."""
        feats = {}
        for m in self.modalities:
            if m == "t":
                feats["t"] = self.encoders["t"](*as_sequence(batch, "t"))
            elif m == "v" and self.image == "crops":
                feats["v"] = self.encoders["v"](self.image_cnn(batch["v_frames"], batch["v_frames_mask"]))
            else:
                feats[m] = self.encoders[m](batch[m])
        for key, layer in self.bimodal.items():
            feats[key] = layer(torch.cat([feats[key[0]], feats[key[1]]], -1))
        if "m" in self.head_names:
            feats["m"] = self.trimodal(torch.cat([feats["vt"], feats["va"], feats["ta"]], -1))  # T_m, eq. 24
        return feats

    def _probs(self, logits: Tensor) -> Tensor:
        if self.activation == "softmax":
            return logits.softmax(-1)
        p = logits.sigmoid()
        return p / p.sum(-1, keepdim=True).clamp(min=1e-12)

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        feats = self.features(batch)
        out: dict[str, Tensor] = {}
        per_head = {h: self.heads[h](f) for h, f in feats.items()}
        for h, values in per_head.items():
            for name, value in values.items():
                out[f"{name}_{h}"] = value
            out[f"feat_{h}"] = feats[h]
        if "logits" in self.spec.heads:
            if self.fusion in FUSIONS:
                probs = torch.stack([self._probs(per_head[h]["logits"]) for h in self.voters])
                fused = (vote_distribution(probs, self.tie_break, self.priority) if self.fusion == "vote"
                         else mean_probability(probs))
                out["logits"] = fused.clamp(min=1e-6).log()
            else:
                out["logits"] = per_head[self.fusion]["logits"]
        if "score" in self.spec.heads:
            names = self.voters if self.fusion in FUSIONS else [self.fusion]
            out["score"] = torch.stack([per_head[h]["score"] for h in names]).mean(0)
        return out

    def extra_losses(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """The loss of every one of the seven heads (equal weights), named ``<head kind>_<head>``:
        CE (or BCE on one-hot targets with ``output_activation="sigmoid"``) for classes, L1/MSE for scores."""
        terms = {}
        for h in self.head_names:
            if "logits" in self.spec.heads:
                logits = outputs[f"logits_{h}"]
                if self.activation == "sigmoid":
                    target = F.one_hot(batch["label"].long(), logits.shape[-1]).float()
                    terms[f"label_{h}"] = F.binary_cross_entropy_with_logits(logits, target)
                else:
                    terms[f"label_{h}"] = F.cross_entropy(logits, batch["label"].long())
            if "score" in self.spec.heads:
                terms[f"score_{h}"] = per_sample_loss("score", outputs[f"score_{h}"], batch["score"].float(),
                                                      self.score_loss).mean()
        return terms

    def training_step(self, batch: dict[str, Tensor], task: Task) -> dict[str, Tensor]:
        """Only the seven head losses: the fused prediction is not trained (a vote has no gradient,
        and the paper trains the heads, then votes)."""
        return self.extra_losses(self(batch), batch)

