"""The one in-memory dataset type every reader returns and every model trains on.

All features live in tensors so a batch is a handful of index gathers (no per-sample Python).
Per modality we keep an utterance vector ``(N, d)`` and, when the source has one, a padded
sequence ``(N, L, d)`` with lengths. Readers also keep the raw text of each row (so a model can
fine-tune a language model on token ids) and, where the source has them, dialogue id, turn order
and speaker (so a context model can see whole dialogues). Labels stay in their native form (score,
class id, multi-hot); which of them a run learns is the task's business (:mod:`mmaffect.tasks`).

What a batch holds is chosen by what a model declares it needs (``AffectModel.needs``):

- always: ``index`` (n,) row ids; per modality m the utterance vector ``m`` (n, d); the targets
  ``score`` (n,), ``label`` (n,), ``labels`` (n, K) that the dataset has.
- ``"sequences"`` or ``"sequences?"``: ``m_seq`` (n, L, d) float32 cut to the longest row of the
  batch, ``m_mask`` (n, L) bool (True = real step), for every modality that has sequences.
- ``"frames"``: ``v_frames`` (n, T, H, W) float32 in [0, 1], the grayscale face crops of the sampled
  video frames cut to the longest row, and ``v_frames_mask`` (n, T) bool. Stored as uint8 (a 48x48
  crop is 2.3 kB) and read from the source on first use (:meth:`AffectDataset.face_frames`), so
  datasets used by models that do not need them never hold them.
- ``"tokens"``: ``t_tokens`` (n, L) int64 word-piece ids of the row's text from the tokenizer the
  model names, cut to the longest row, and ``t_tokens_mask`` (n, L) bool. Ids are computed once per
  dataset (:meth:`AffectDataset.tokenize`) and kept as a tensor.
- ``"pretrained_text"``: ``t_pretrained`` (n, d), the frozen packaged sentence vectors of the text:
  the ones kept in :attr:`AffectDataset.pretrained_text` when a fine-tuned encoder replaced the text
  modality (:mod:`mmaffect.data.encoded`), else the text modality's own vectors (standardised like
  ``t``). With ``"dialogues"`` also ``t_pretrained_dlg`` (D, T, d). For models that must read the
  pretrained vectors whatever the text modality holds (``compm``'s speaker memory).
- ``"dialogues"``: the batch unit is a whole dialogue (all rows of the batch's dialogues that are
  among the rows being trained or evaluated, in turn order). Extra keys: ``turn_mask`` (D, T) bool,
  ``dlg_rows`` (D, T) int64 row ids (-1 = padding), ``m_dlg`` (D, T, d) per modality (zeros at
  padding), ``speaker_ids`` (D, T) int64 speaker codes numbered per dialogue in order of first
  appearance (0 at padding; only when the dataset has speakers). ``index``, ``m``, the targets and
  any sequence/token keys hold the n real turns in the order of ``dlg_rows[turn_mask]`` (dialogue
  by dialogue, turn by turn), and a dialogue model returns its heads for exactly those n turns,
  e.g. ``heads(h[batch["turn_mask"]])``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import Tensor

from mmaffect.errors import ConfigError

MODALITY_NAMES = {"t": "text", "a": "audio", "v": "video"}
NEEDS = ("vectors", "sequences", "sequences?", "frames", "tokens", "pretrained_text", "dialogues")
_ROW_FIELDS = ("score", "label", "labels", "split", "fold", "dialogue_id", "speaker", "utt_index", "context",
               "group", "text", "pretrained_text")


@dataclass(frozen=True)
class TokenIds:
    """Word-piece ids of every row's text: ``ids`` (N, L) int64, ``lengths`` (N,) int64."""

    ids: Tensor
    lengths: Tensor

    def take(self, index: Tensor) -> TokenIds:
        return TokenIds(self.ids[index], self.lengths[index])


@dataclass(frozen=True)
class FrameSequences:
    """Grayscale face crops of every row: ``frames`` (N, T, H, W) uint8 (zeros after a row's
    ``lengths[i]`` real frames), ``lengths`` (N,) int64."""

    frames: Tensor
    lengths: Tensor

    def __post_init__(self) -> None:
        if self.frames.ndim != 4 or self.frames.dtype != torch.uint8:
            raise ValueError(f"face frames must be (N, T, H, W) uint8, got {tuple(self.frames.shape)} "
                             f"{self.frames.dtype}")
        if self.lengths.shape != (self.frames.shape[0],):
            raise ValueError("face frame lengths must be (N,)")

    def take(self, index: Tensor) -> FrameSequences:
        lengths = self.lengths[index]
        width = max(int(lengths.max()) if len(lengths) else 1, 1)
        return FrameSequences(self.frames[index, :width], lengths)


def masked_mean(sequence: Tensor, lengths: Tensor) -> Tensor:
    """Mean over the first ``lengths[i]`` steps of each padded sequence (zero for empty ones)."""
    mask = torch.arange(sequence.shape[1])[None, :] < lengths[:, None]
    total = (sequence.float() * mask[..., None]).sum(1)
    return total / lengths.clamp(min=1)[:, None].to(total.dtype)


@dataclass
class Modality:
    """Features of one modality for all N samples.

    ``vector`` is always present (readers that only have sequences get the masked mean), so every
    vector model runs on every dataset. ``sequence`` may be stored as float16 to halve memory; batches
    are always float32.
    """

    vector: Tensor
    sequence: Tensor | None = None
    lengths: Tensor | None = None

    def __post_init__(self) -> None:
        if self.vector.ndim != 2:
            raise ValueError(f"modality vector must be (N, d), got {tuple(self.vector.shape)}")
        if (self.sequence is None) != (self.lengths is None):
            raise ValueError("a modality sequence needs its lengths and vice versa")
        if self.sequence is not None:
            if self.sequence.ndim != 3 or self.sequence.shape[0] != self.vector.shape[0]:
                raise ValueError(f"modality sequence must be (N, L, d), got {tuple(self.sequence.shape)}")
            if self.lengths.shape != (self.vector.shape[0],):
                raise ValueError("modality lengths must be (N,)")

    @classmethod
    def from_sequence(cls, sequence: Tensor, lengths: Tensor) -> Modality:
        return cls(vector=masked_mean(sequence, lengths), sequence=sequence, lengths=lengths.long())

    @property
    def dim(self) -> int:
        return int(self.vector.shape[1])

    @property
    def seq_dim(self) -> int | None:
        return None if self.sequence is None else int(self.sequence.shape[2])

    def take(self, index: Tensor) -> Modality:
        if self.sequence is None:
            return Modality(self.vector[index])
        lengths = self.lengths[index]
        width = max(int(lengths.max()) if len(lengths) else 1, 1)
        return Modality(self.vector[index], self.sequence[index, :width], lengths)


@dataclass
class AffectDataset:
    """Utterances with per-modality features, labels, ids and optional conversation structure.

    Attributes:
        name: dataset name as given to :func:`mmaffect.data.load_dataset`.
        ids: utterance ids, unique, ``(N,)`` str.
        modalities: ``{"t"|"a"|"v": Modality}``.
        score: regression target ``(N,)`` float32, or None.
        label: class id ``(N,)`` int64, or None; ``class_names[label]`` is its name.
        labels: multi-hot ``(N, K)`` float32, or None; ``tag_names`` name the columns.
        split: ``"train"|"valid"|"test"`` per sample, or None when the data has no fixed split.
        fold: cross-validation fold per sample (e.g. IEMOCAP session), or None.
        dialogue_id, speaker, utt_index: conversation structure for context models, or None.
        context: per row, the preceding utterances a corpus gives instead of whole dialogues
            (object array of ``[{"text", "speaker"}, ...]`` lists), or None.
        text: the raw text (transcript) of each row ``(N,)`` str, or None.
        tokens: word-piece ids per tokenizer key (``"minilm@128"``), filled by :meth:`tokenize`.
            Views with the same rows (``replace``, standardisation) share this dict, so a text is
            tokenized once per experiment, not once per run.
        frame_loader: ``ids -> FrameSequences`` reading the face crops of those rows from the source
            (set by readers that have them), or None.
        frames: the loaded face crops (key ``"v"``), filled by :meth:`face_frames`; shared by views
            with the same rows, like ``tokens``.
        group: the unit that must never straddle train and test (video, speaker, dialogue), or None.
        default_task: the task a run uses unless told otherwise (see :mod:`mmaffect.tasks`).
        meta: provenance and feature recipe (source files, encoders and their versions).
        pretrained_text: the frozen sentence vectors ``(N, d)`` the text modality held before a
            fine-tuned encoder replaced it (:func:`mmaffect.data.encoded.with_encoded_text`), or None
            when the text modality is still those vectors. Not standardised (the standardiser fits
            modalities only); read through the ``"pretrained_text"`` need.
    """

    name: str
    ids: np.ndarray
    modalities: dict[str, Modality]
    score: Tensor | None = None
    label: Tensor | None = None
    class_names: list[str] | None = None
    labels: Tensor | None = None
    tag_names: list[str] | None = None
    split: np.ndarray | None = None
    fold: np.ndarray | None = None
    dialogue_id: np.ndarray | None = None
    speaker: np.ndarray | None = None
    utt_index: np.ndarray | None = None
    context: np.ndarray | None = None
    group: np.ndarray | None = None
    default_task: str = "classification"
    meta: dict = field(default_factory=dict)
    text: np.ndarray | None = None
    tokens: dict[str, TokenIds] = field(default_factory=dict, repr=False)
    frame_loader: Callable[[np.ndarray], FrameSequences] | None = field(default=None, repr=False, compare=False)
    frames: dict[str, FrameSequences] = field(default_factory=dict, repr=False)
    pretrained_text: Tensor | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        n = len(self.ids)
        if len(set(self.ids.tolist())) != n:
            raise ValueError(f"{self.name}: utterance ids are not unique")
        for key, mod in self.modalities.items():
            if key not in MODALITY_NAMES:
                raise ValueError(f"{self.name}: unknown modality {key!r}; expected one of t, a, v")
            if mod.vector.shape[0] != n:
                raise ValueError(f"{self.name}: modality {key} has {mod.vector.shape[0]} rows, ids have {n}")
        for attr in _ROW_FIELDS:
            value = getattr(self, attr)
            if value is not None and len(value) != n:
                raise ValueError(f"{self.name}: {attr} has {len(value)} rows, ids have {n}")
        if self.label is not None and self.class_names is None:
            raise ValueError(f"{self.name}: class labels need class_names")

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, index: Sequence[int] | np.ndarray | Tensor) -> AffectDataset:
        """A new dataset with the given rows (in that order)."""
        idx = torch.as_tensor(np.asarray(index, dtype=np.int64))
        np_idx = idx.numpy()

        def pick(value):
            if value is None:
                return None
            return value[idx] if isinstance(value, Tensor) else value[np_idx]

        return replace(
            self,
            ids=self.ids[np_idx],
            modalities={k: m.take(idx) for k, m in self.modalities.items()},
            tokens={k: t.take(idx) for k, t in self.tokens.items()},
            frames={k: f.take(idx) for k, f in self.frames.items()},
            **{a: pick(getattr(self, a)) for a in _ROW_FIELDS},
        )

    def with_modalities(self, keys: Sequence[str]) -> AffectDataset:
        """Keep only the named modalities (for ablations); a ConfigError (the user's ``--modalities`` or a
        suite's ablation named it) if one is missing."""
        missing = [k for k in keys if k not in self.modalities]
        if missing:
            raise ConfigError(f"{self.name} has no modality {', '.join(missing)}; "
                             f"it has {', '.join(self.modalities)}")
        return replace(self, modalities={k: self.modalities[k] for k in keys})

    def split_indices(self) -> dict[str, np.ndarray]:
        """Row indices of each fixed split (empty dict when the dataset has none)."""
        if self.split is None:
            return {}
        return {name: np.flatnonzero(self.split == name) for name in ("train", "valid", "test")
                if (self.split == name).any()}

    def speaker_codes(self) -> np.ndarray | None:
        """Integer code per row for the speaker names (codes follow sorted names), or None."""
        if self.speaker is None:
            return None
        return np.unique(self.speaker.astype(str), return_inverse=True)[1].astype(np.int64)

    def tokenize(self, tokenizer: str, max_tokens: int) -> TokenIds:
        """Token ids of every row's text for ``tokenizer``, computed on first use and kept."""
        key = f"{tokenizer}@{max_tokens}"
        if key not in self.tokens:
            if self.text is None:
                raise ValueError(f"{self.name} keeps no raw text, so it has no token ids")
            from mmaffect.features.text import token_ids

            self.tokens[key] = TokenIds(*token_ids([str(t) for t in self.text], tokenizer, max_tokens))
        return self.tokens[key]

    def face_frames(self) -> FrameSequences:
        """The face crops of every row, read from the source on first use and kept."""
        if "v" not in self.frames:
            if self.frame_loader is None:
                raise ValueError(f"{self.name} keeps no face crops (only `cache:` datasets of `mmaffect extract` do)")
            loaded = self.frame_loader(self.ids)
            if loaded.frames.shape[0] != len(self):
                raise ValueError(f"{self.name}: the frame loader returned {loaded.frames.shape[0]} rows "
                                 f"for {len(self)}")
            self.frames["v"] = loaded
        return self.frames["v"]

    def batch(self, index: Tensor, needs: Collection[str] = ("vectors", "sequences"),
              tokens: str | None = None) -> dict[str, Tensor]:
        """Gather rows into model inputs (see the module docstring for the keys).

        ``needs`` picks the inputs beyond vectors and targets; ``tokens`` is the key of
        :attr:`tokens` to use (see :meth:`tokenize`) when ``"tokens"`` is needed. Sequences are only
        gathered for modalities that have them.
        """
        out: dict[str, Tensor] = {"index": index}
        for key, mod in self.modalities.items():
            out[key] = mod.vector[index].float()
            if ("sequences" in needs or "sequences?" in needs) and mod.sequence is not None:
                lengths = mod.lengths[index]
                width = max(int(lengths.max()), 1)
                out[f"{key}_seq"] = mod.sequence[index, :width].float()
                out[f"{key}_mask"] = torch.arange(width)[None, :] < lengths[:, None]
        if "frames" in needs and "v" in self.modalities:
            crops = self.face_frames()
            lengths = crops.lengths[index]
            width = max(int(lengths.max()), 1)
            out["v_frames"] = crops.frames[index, :width].float() / 255.0
            out["v_frames_mask"] = torch.arange(width)[None, :] < lengths[:, None]
        if "tokens" in needs:
            if tokens not in self.tokens:
                raise ValueError(f"{self.name}: no token ids {tokens!r}; call tokenize() first")
            ids = self.tokens[tokens]
            lengths = ids.lengths[index]
            width = max(int(lengths.max()), 1)
            out["t_tokens"] = ids.ids[index, :width]
            out["t_tokens_mask"] = torch.arange(width)[None, :] < lengths[:, None]
        if "pretrained_text" in needs:
            out["t_pretrained"] = self.pretrained_text_vectors()[index].float()
        for target in ("score", "label", "labels"):
            value = getattr(self, target)
            if value is not None:
                out[target] = value[index]
        return out

    def pretrained_text_vectors(self) -> Tensor:
        """(N, d) frozen sentence vectors of the text: the kept ones, else the text modality's."""
        if self.pretrained_text is not None:
            return self.pretrained_text
        if "t" not in self.modalities:
            raise ConfigError(f"{self.name} has no text vectors, so no pretrained text vectors")
        return self.modalities["t"].vector

    def dialogue_table(self, rows: np.ndarray) -> Tensor:
        """``rows`` grouped into dialogues in turn order: ``(D, T)`` row ids, -1 = padding.

        Dialogues keep the order of their first row in ``rows``; turns are ordered by ``utt_index``
        (row order when the dataset has none). Only the given rows appear, so training never sees
        the validation turns of a dialogue split across subsets.
        """
        if self.dialogue_id is None:
            raise ValueError(f"{self.name} has no dialogue ids, so it cannot be batched by dialogue")
        rows = np.asarray(rows, dtype=np.int64)
        names, first, dialogue = np.unique(self.dialogue_id[rows].astype(str), return_index=True,
                                           return_inverse=True)
        rank = np.empty(len(names), dtype=np.int64)
        rank[np.argsort(first, kind="stable")] = np.arange(len(names))
        dialogue = rank[dialogue]
        turn = self.utt_index[rows] if self.utt_index is not None else np.arange(len(rows))
        order = np.lexsort((np.arange(len(rows)), turn, dialogue))  # by dialogue, then turn, then row order
        dialogue, sorted_rows = dialogue[order], rows[order]
        counts = np.bincount(dialogue, minlength=len(names))
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        position = np.arange(len(rows)) - starts[dialogue]
        table = np.full((len(names), int(counts.max()) if len(rows) else 0), -1, dtype=np.int64)
        table[dialogue, position] = sorted_rows
        return torch.from_numpy(table)

    def dialogue_batch(self, table: Tensor, needs: Collection[str] = ("vectors", "dialogues"),
                       tokens: str | None = None) -> dict[str, Tensor]:
        """Model inputs for whole dialogues: ``table`` is (D, T) row ids with -1 padding, as made by
        :meth:`dialogue_table`; keys as in the module docstring."""
        table = table[:, :max(int((table >= 0).sum(1).max()), 1)]
        turn_mask = table >= 0
        rows = table[turn_mask]
        out = self.batch(rows, needs, tokens)
        out["turn_mask"] = turn_mask
        out["dlg_rows"] = table
        for key in [*self.modalities, *(["t_pretrained"] if "t_pretrained" in out else [])]:
            grid = torch.zeros(*table.shape, out[key].shape[1])
            grid[turn_mask] = out[key]
            out[f"{key}_dlg"] = grid
        if self.speaker is not None:
            codes = torch.from_numpy(self.speaker_codes())[table.clamp(min=0)]
            out["speaker_ids"] = _first_appearance_codes(codes, turn_mask)
        return out


def _first_appearance_codes(codes: Tensor, mask: Tensor) -> Tensor:
    """Renumber (D, T) speaker codes 0, 1, ... per dialogue in order of first appearance (0 at padding)."""
    out = torch.zeros_like(codes)
    for d in range(codes.shape[0]):  # one small unique per dialogue, not per sample
        real = codes[d][mask[d]]
        _, inverse = torch.unique(real, return_inverse=True)
        first = torch.full((int(inverse.max()) + 1 if len(real) else 0,), len(real), dtype=torch.long)
        first.scatter_reduce_(0, inverse, torch.arange(len(real)), reduce="amin")
        rank = torch.argsort(torch.argsort(first))
        out[d, :len(real)] = rank[inverse]
    return out

