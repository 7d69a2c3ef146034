"""``linear``: one linear layer per task head on the concatenated utterance vectors.

With the class head and cross-entropy this is multinomial logistic regression (softmax); with the score
head and ``train.score_loss=mse``, ridge regression. ``train.weight_decay`` is the L2 penalty on the
weights (not the biases, as in logistic regression); with ``adam`` it is added to the gradient, so the
penalised optimum is a fixed point of training. It is the floor every other model must reach on the same
features. The penalty matters most on small data, so it is always chosen on validation (see
:mod:`mmaffect.training.selection`), together with early stopping on the validation loss. The grid
spans what logistic regression's ``C`` grid 1e-3..1 means on a few hundred to a few thousand rows
(penalty = 1 / (C n)): on 267 MELD rows the old top value 1.0 was chosen in 7 of 9 runs. The weights
start at zero rather than at random: the objective is convex, and random initial weights of the size
of the optimum would survive an early stop as noise.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mmaffect.models.base import AffectModel, Heads, ModelSpec
from mmaffect.models.registry import register_model


@register_model("linear", description="softmax / ridge head on the concatenated utterance vectors "
                                      "(L2 weight decay chosen on validation)",
                train_defaults={"epochs": 200},
                search={"train.weight_decay": [1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0, 3.0, 10.0]},
                search_max_train_rows=None)
class Linear(AffectModel):
    def __init__(self, spec: ModelSpec):
        super().__init__(spec)
        self.modalities = list(spec.dims)
        self.heads = Heads(sum(spec.dims.values()), spec.heads)
        for param in self.heads.parameters():  # start at the penalty's minimum, not at random weights that
            nn.init.zeros_(param)             # early stopping might keep (the problem is convex anyway)

    def param_groups(self, cfg) -> list[dict]:
        """Weights decayed, biases not: as in logistic regression, the penalty must not pull the
        intercept to zero (on imbalanced classes that moves the decision threshold)."""
        weights = [p for n, p in self.named_parameters() if n.endswith("weight")]
        biases = [p for n, p in self.named_parameters() if not n.endswith("weight")]
        return [{"params": weights}, {"params": biases, "weight_decay": 0.0}]

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return self.heads(torch.cat([batch[m] for m in self.modalities], dim=-1))
