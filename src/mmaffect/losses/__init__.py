"""Loss terms shared by models (contrastive, relevance-weighted, soft-target), each a plain function
tested on hand-worked cases in ``tests/test_losses.py``. Models return them by name from
``extra_losses``; their weights come from ``train.loss_weights``."""

from mmaffect.losses.contrastive import class_level_nce, info_nce_pairs, prototype_contrastive_loss, supcon_loss
from mmaffect.losses.targets import per_sample_loss, same_class, sentiment_classes, truth_targets

__all__ = ["class_level_nce", "info_nce_pairs", "per_sample_loss", "prototype_contrastive_loss", "same_class",
           "sentiment_classes", "supcon_loss", "truth_targets"]
