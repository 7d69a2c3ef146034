"""Classic baselines: linear, single-modality MLPs, early fusion (MLP, LSTM), LF-DNN, TFN, LMF."""

from mmaffect.models.baselines import ef, lf_dnn, linear, lmf, tfn, unimodal  # noqa: F401
