"""What the MMSA-zoo baselines (MFN, Graph-MFN, MulT, MISA, Self-MM, MMIM) share.

Every zoo model reads each modality as a padded step sequence ``(B, L, d)`` with a mask: the per-step
features where the dataset has them (feature caches, token states), and otherwise the utterance
vector as a length-1 sequence (``mosi-bclstm``). So one model file serves both kinds of data, and a
sequence model never needs a "-vec" twin. ``sequences=False`` forces the vector path on any data.

MISA, Self-MM and MMIM were published with a fine-tuned BERT text branch. Here that branch is the
packaged all-MiniLM-L6-v2 (6 layers, 22.7 M weights, offline) fine-tuned on the engine's token
batches (``text_encoder="minilm"``, needs the dataset's raw text). The default is
``text_encoder="features"``: the text modality's features go through the same encoder as audio and
video, because fine-tuning a transformer costs minutes per epoch on a CPU.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from mmaffect.models.base import AffectModel, ModelSpec

TEXT_ENCODERS = ("features", "minilm")
# MMSA stops after 8 epochs without a better validation loss; 30 epochs bound a CPU run (config can raise both)
ZOO_SCHEDULE = {"epochs": 30, "patience": 8}


class ZooModel(AffectModel):
    """Base of the zoo models: picks per modality between per-step sequences and the vector.

    ``needs`` holds ``"sequences?"``: readers load the sequences they have and batches carry them;
    a modality without them (or every modality with ``sequences=False``) is read as its vector.
    ``self.step_dims[m]`` is the per-step width the model sees for modality ``m``; ``self.steps``
    returns ``(x, mask)`` for it.
    """

    needs = frozenset({"vectors", "sequences?"})

    def __init__(self, spec: ModelSpec, sequences: bool):
        super().__init__(spec)
        self.modalities = list(spec.dims)
        self.use_seq = {m: bool(sequences) and m in spec.seq_dims for m in self.modalities}
        self.step_dims = {m: spec.seq_dims[m] if self.use_seq[m] else d for m, d in spec.dims.items()}

    def steps(self, batch: dict[str, Tensor], m: str) -> tuple[Tensor, Tensor]:
        """Modality ``m`` as ``(B, L, d)`` steps and a ``(B, L)`` bool mask (True = real step)."""
        if self.use_seq[m]:
            mask = batch[f"{m}_mask"].clone()
            mask[:, 0] |= ~mask.any(1)  # an empty row reads its first (zero) step: attention needs one key
            return batch[f"{m}_seq"], mask
        x = batch[m]
        return x[:, None, :], torch.ones(x.shape[0], 1, dtype=torch.bool, device=x.device)


def lengths_of(mask: Tensor) -> Tensor:
    """Real steps per row, at least 1 (an empty row reads its first, zero, step)."""
    return mask.sum(1).clamp(min=1)


def last_step(h: Tensor, mask: Tensor) -> Tensor:
    """``h[b, last real step of b]`` for ``(B, L, d)`` states."""
    index = (lengths_of(mask) - 1).to(h.device)
    return h[torch.arange(h.shape[0], device=h.device), index]


def common_grid(seqs: list[Tensor], masks: list[Tensor]) -> tuple[list[Tensor], Tensor]:
    """Resample each row's modalities onto one time grid of ``max_m len_m`` steps (nearest step).

    MFN and Graph-MFN read all modalities at the same time step (MMSA feeds them word-aligned data);
    on unaligned data this stretches the shorter sequences of a row, and a length-1 vector becomes
    a constant sequence. Returns the resampled ``(B, L, d_m)`` sequences and the common ``(B, L)`` mask.
    """
    lengths = [lengths_of(m) for m in masks]
    common = torch.stack(lengths).amax(0)
    steps = torch.arange(int(common.max()), device=common.device)
    mask = steps[None, :] < common[:, None]
    out = []
    for seq, length in zip(seqs, lengths, strict=True):
        source = ((steps[None, :] * length[:, None]) // common[:, None]).clamp(max=seq.shape[1] - 1)
        out.append(torch.gather(seq, 1, source[..., None].expand(-1, -1, seq.shape[2])) * mask[..., None])
    return out, mask


def one_step_lstm(rnn: nn.LSTM, x: Tensor) -> Tensor:
    """A one-layer ``rnn`` run over a single step ``x (B, d)`` from zero states: ``(B, dirs * hidden)``,
    each direction's final hidden state (which is also the step's output), forward first.

    With ``h0 = c0 = 0`` the recurrent weights and the forget gate drop out of the maths:
    ``c = σ(i) ⊙ tanh(g)``, ``h = σ(o) ⊙ tanh(c)``, with the gates from one GEMM for both directions.
    Same weights and same result as ``rnn`` on a length-1 sequence (utterance vectors, mosi-bclstm),
    where packing and the native kernel's fixed cost per call were most of an LSTM's time on a CPU.
    """
    suffixes = ["", "_reverse"] if rnn.bidirectional else [""]
    weight = torch.cat([getattr(rnn, f"weight_ih_l0{s}") for s in suffixes])
    if rnn.bias:
        bias = torch.cat([getattr(rnn, f"bias_ih_l0{s}") + getattr(rnn, f"bias_hh_l0{s}") for s in suffixes])
    else:
        bias = x.new_zeros(weight.shape[0])
    gates = torch.addmm(bias, x, weight.t()).view(x.shape[0], len(suffixes), 4, rnn.hidden_size)
    i, _, g, o = gates.unbind(2)
    return (torch.sigmoid(o) * torch.tanh(torch.sigmoid(i) * torch.tanh(g))).reshape(x.shape[0], -1)


class LSTMEncoder(nn.Module):
    """Packed (B)LSTM over the real steps; returns the final hidden state(s) ``(B, dirs * hidden)``.

    Packing is what makes padded steps change nothing (the Self-MM/MMIM ``AuViSubNet``). A one-layer
    LSTM over length-1 sequences takes :func:`one_step_lstm`, the same maths without the kernel.
    """

    def __init__(self, in_dim: int, hidden: int, layers: int = 1, bidirectional: bool = False,
                 dropout: float = 0.0):
        super().__init__()
        self.rnn = nn.LSTM(in_dim, hidden, num_layers=layers, batch_first=True, bidirectional=bidirectional,
                           dropout=dropout if layers > 1 else 0.0)
        self.out_dim = hidden * (2 if bidirectional else 1)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        if x.shape[1] == 1 and self.rnn.num_layers == 1:
            return one_step_lstm(self.rnn, x[:, 0])
        packed = pack_padded_sequence(x, lengths_of(mask).cpu(), batch_first=True, enforce_sorted=False)
        _, (h, _) = self.rnn(packed)
        dirs = 2 if self.rnn.bidirectional else 1
        return h[-dirs:].transpose(0, 1).reshape(x.shape[0], -1)


class MiniLMText(nn.Module):
    """The packaged MiniLM, fine-tuned: masked mean of its last token states (its own pooling)."""

    def __init__(self):
        super().__init__()
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging

        from mmaffect.features.text import model_source

        hf_logging.disable_progress_bar()
        self.encoder = AutoModel.from_pretrained(model_source(None))
        self.encoder.pooler = None  # unused: we mean-pool
        self.out_dim = int(self.encoder.config.hidden_size)

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        mask = batch["t_tokens_mask"]
        states = self.encoder(input_ids=batch["t_tokens"], attention_mask=mask.long()).last_hidden_state
        weights = mask.unsqueeze(-1).to(states.dtype)
        return (states * weights).sum(1) / weights.sum(1).clamp(min=1)


def use_minilm(model: ZooModel, text_encoder: str, max_tokens: int) -> MiniLMText | None:
    """Set ``model`` up for the fine-tuned MiniLM text branch when asked (needs token ids)."""
    if text_encoder not in TEXT_ENCODERS:
        raise ValueError(f"text_encoder must be one of {', '.join(TEXT_ENCODERS)}, got {text_encoder!r}")
    if text_encoder == "features" or "t" not in model.spec.dims:
        return None
    from mmaffect.features.text import PACKAGED_TOKENIZER

    model.needs = frozenset(model.needs | {"tokens"})
    model.tokenizer = PACKAGED_TOKENIZER
    model.max_tokens = max_tokens
    return MiniLMText()


def encoder_groups(model: AffectModel, text: MiniLMText | None, encoder_lr: float) -> list[dict]:
    """Two parameter groups when a pretrained text encoder is fine-tuned (encoder at ``encoder_lr``)."""
    if text is None:
        return [{"params": [p for p in model.parameters() if p.requires_grad]}]
    own = {id(p) for p in text.parameters()}
    return [{"params": list(text.parameters()), "lr": encoder_lr},
            {"params": [p for p in model.parameters() if p.requires_grad and id(p) not in own]}]
