"""Emotion in a live conversation, one turn at a time, with a causal (online) context model.

    >>> import mmaffect
    >>> from mmaffect.conversation import Conversation
    >>> conv = Conversation(mmaffect.load("runs/iemocap-drnn-causal"))
    >>> conv.add("A", "I got the job!")
    {'label': 'exc', 'probabilities': {...}, 'turn': 0, 'speaker': 'A'}
    >>> conv.add("B", "No way. That's wonderful.")       # read with turn 0 as its context

Why only causal models: an online prediction for turn k cannot wait for turns k+1, ... A causal
context model (``dialogue-rnn`` with ``bidirectional=false``, ``turn-transformer`` with
``causal=true``), a context model with ``context=false``, or any text model without dialogue context
qualifies; a bidirectional one (``bc-lstm``, the defaults of the other two) is refused, since its
prediction for a turn would change once later turns arrive.

How: :meth:`Conversation.add` embeds the new turn's text once, with the checkpoint's own text encoder
(the packaged MiniLM, or the fine-tuned ``text-finetune`` checkpoint named by the training data's
``dataset_args.text_encoder``), and runs the model on the dialogue so far as one dialogue batch, the
code path of training and ``evaluate``. A model that also reads the frozen MiniLM vectors beside a
fine-tuned encoder's (``compm``'s speaker memory, need ``"pretrained_text"``) gets those too, as in
training (:attr:`~mmaffect.data.dataset.AffectDataset.pretrained_text`). A causal model's output for
turn k reads turns 1..k only, so the answer equals the batch prediction of the finished dialogue at
that turn (tested). Re-running the dialogue so far is linear in its length per turn; for dialogues of
tens of turns that is milliseconds beside the text encoder.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from mmaffect.data.dataset import AffectDataset, Modality
from mmaffect.errors import ConfigError

if TYPE_CHECKING:
    from mmaffect.inference import LoadedModel
    from mmaffect.predictor import Predictor


def is_online(model: torch.nn.Module) -> bool:
    """Whether a model's prediction for a turn reads only that turn and earlier ones."""
    return bool(getattr(model, "online", "dialogues" not in getattr(model, "needs", ())))


class Conversation:
    """One live dialogue: add turns in order, get each turn's prediction as it arrives.

    Build it on a loaded model, ``Conversation(mmaffect.load(CKPT))`` (this module builds on the predictor,
    not the other way round). ``turns`` lists the ``(speaker, text)`` pairs so far; :meth:`reset` starts a
    new dialogue with the same model.
    """

    def __init__(self, predictor: Predictor):
        if predictor.modalities != ["t"] or predictor.recipe.media:
            raise ConfigError(f"a live conversation needs a text-only model; {predictor.source} reads "
                              f"{'+'.join(predictor.modalities)}")
        offline = [str(m.path) for m in predictor.models if not is_online(m.model)]
        if offline:
            raise ConfigError(f"{offline[0]}: {predictor.meta['model']} with these options reads later turns "
                              "(bidirectional); a live conversation needs a causal model (dialogue-rnn with "
                              "bidirectional=false, turn-transformer with causal=true)")
        self.predictor = predictor
        self._encoder = self._text_encoder()
        self._keep_pretrained = self._encoder is not None and any(
            "pretrained_text" in getattr(m.model, "needs", ()) for m in predictor.models)
        self.turns: list[tuple[str, str]] = []
        self._vectors: list[Tensor] = []
        self._pretrained: list[Tensor] = []

    def _text_encoder(self) -> LoadedModel | None:
        """The fine-tuned encoder the model's training data named, or None for the packaged MiniLM."""
        path = self.predictor.recipe.dataset_args.get("text_encoder")
        if path is None:
            return None
        from mmaffect.data.encoded import encoder_checkpoint, load_encoder

        record = self.predictor.meta.get("features", {}).get("text_encoder_checkpoint", {})
        return load_encoder(encoder_checkpoint(path), self.predictor.recipe.dataset, record.get("sha256"))

    def _embed(self, text: str) -> Tensor:
        """(1, d) text vector of one utterance, as the model's training data were made."""
        if self._encoder is None:
            return self.predictor.text_features([text]).modalities["t"].vector.float()
        from mmaffect.data.encoded import encode_texts

        one = AffectDataset(name="live", ids=np.array(["turn"]), modalities={"t": Modality(torch.zeros(1, 1))},
                            text=np.array([text], dtype=str))
        return encode_texts(one, self._encoder)

    def _dialogue(self) -> AffectDataset:
        n = len(self.turns)
        return AffectDataset(
            name="live", ids=np.array([f"turn{i}" for i in range(n)]),
            modalities={"t": Modality(torch.cat(self._vectors))},
            dialogue_id=np.array(["live"] * n), speaker=np.array([s for s, _ in self.turns], dtype=str),
            utt_index=np.arange(n), text=np.array([t for _, t in self.turns], dtype=str),
            pretrained_text=torch.cat(self._pretrained) if self._keep_pretrained else None)

    def add(self, speaker: str, text: str) -> dict:
        """Append a turn and return its prediction (``label``/``probabilities`` or ``score``, as
        :meth:`~mmaffect.predictor.Predictor.predict`), with its ``turn`` number and ``speaker``."""
        if not isinstance(speaker, str) or not speaker.strip():
            raise ConfigError("a turn needs a speaker name")
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(f"turn {len(self.turns)} ({speaker}): empty text")
        vector = self._embed(text)
        if self._keep_pretrained:  # the packaged MiniLM vector, as with_encoded_text kept it in training
            from mmaffect.data.text_features import text_modality

            self._pretrained.append(text_modality([text], False)[0].vector.float())
        self.turns.append((speaker, text))
        self._vectors.append(vector)
        outputs = self.predictor.outputs(self._dialogue(), "conversation")
        last = {key: value[-1:] for key, value in outputs.items()}
        return {**self.predictor.records(last)[0], "turn": len(self.turns) - 1, "speaker": speaker}

    def reset(self) -> None:
        """Forget the turns so far (the model stays loaded)."""
        self.turns, self._vectors, self._pretrained = [], [], []
