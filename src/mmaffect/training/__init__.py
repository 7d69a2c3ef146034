"""The generic trainer, experiment runs (seeds, folds, ablations), configs and checkpoints."""
