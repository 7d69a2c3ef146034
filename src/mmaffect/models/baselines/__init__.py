"""Classic baselines: single-modality MLPs, early fusion (MLP, LSTM), LF-DNN, TFN, LMF."""

from mmaffect.models.baselines import ef, lf_dnn, lmf, tfn, unimodal  # noqa: F401
