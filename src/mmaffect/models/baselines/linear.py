"""``linear``: one linear layer per task head on the concatenated utterance vectors.

With the class head and cross-entropy this is multinomial logistic regression (softmax); with the score
head and ``train.score_loss=mse``, ridge regression. ``train.weight_decay`` is the L2 penalty on the
weights (not the biases, as in logistic regression). It is the floor every other model must reach on
the same features, so it is fitted to its penalised optimum rather than early-stopped: full-batch
L-BFGS in one epoch (:class:`mmaffect.training.trainer.FullBatchLBFGS`). Early-stopped Adam left it
0.5 UA under scikit-learn's logistic regression on RAVDESS (issue 16); at the optimum the two solve the
same problem (``tests/test_engine.py`` checks the weights against scikit-learn's). The penalty matters
most on small data, so it is always chosen on validation (see :mod:`mmaffect.training.selection`). The
grid spans what logistic regression's ``C`` grid 1e-3..1 means on a few hundred to a few thousand rows
(penalty = 1 / (C n), 2 / (C n) for two classes). The weights start at zero, so every seed gives the
same fit.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mmaffect.models.base import AffectModel, Heads, ModelSpec
from mmaffect.models.registry import register_model

FULL_BATCH = 2**31 - 1  # L-BFGS takes every training row in one batch


@register_model("linear", description="softmax / ridge head on the concatenated utterance vectors "
                                      "(L2 weight decay chosen on validation)",
                train_defaults={"optimizer": "lbfgs", "epochs": 1, "batch_size": FULL_BATCH},
                search={"train.weight_decay": [1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0, 3.0, 10.0]},
                search_max_train_rows=None)
class Linear(AffectModel):
    def __init__(self, spec: ModelSpec):
        super().__init__(spec)
        self.modalities = list(spec.dims)
        self.heads = Heads(sum(spec.dims.values()), spec.heads)
        for param in self.heads.parameters():  # start at the penalty's minimum: the problem is convex, so
            nn.init.zeros_(param)             # the start only changes the iterations, and no seed matters

    def param_groups(self, cfg) -> list[dict]:
        """Weights decayed, biases not: as in logistic regression, the penalty must not pull the
        intercept to zero (on imbalanced classes that moves the decision threshold)."""
        weights = [p for n, p in self.named_parameters() if n.endswith("weight")]
        biases = [p for n, p in self.named_parameters() if not n.endswith("weight")]
        return [{"params": weights}, {"params": biases, "weight_decay": 0.0}]

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return self.heads(torch.cat([batch[m] for m in self.modalities], dim=-1))
