"""Building blocks shared by models: pooling, attention (perceiver, bridge attention, modality bag),
fusion (low-rank), heads and the kNN pseudo-label generator. Each is unit-tested alone
(``tests/test_blocks.py``)."""

from mmaffect.models.blocks.attention import (
    AttentionBlock,
    BridgeAttention,
    GatedBridgeLayer,
    GatedBridgeStack,
    ModalityBagAttention,
    PerceiverResampler,
)
from mmaffect.models.blocks.fusion import LowRankFusion
from mmaffect.models.blocks.heads import MLPHeads
from mmaffect.models.blocks.pooling import adaptive_pool_weights, as_sequence, masked_adaptive_pool, masked_mean
from mmaffect.models.blocks.pseudo_labels import KNNPseudoLabels, knn_label_shift, momentum_update

__all__ = ["AttentionBlock", "BridgeAttention", "GatedBridgeLayer", "GatedBridgeStack", "KNNPseudoLabels",
           "LowRankFusion", "MLPHeads", "ModalityBagAttention", "PerceiverResampler", "adaptive_pool_weights",
           "as_sequence", "knn_label_shift", "masked_adaptive_pool", "masked_mean", "momentum_update"]
