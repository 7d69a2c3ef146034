"""Datasets: the in-memory type, registered readers and safe loading."""

from mmaffect.data.dataset import AffectDataset, Modality
from mmaffect.data.registry import DATASETS, dataset_table, load_dataset, register_dataset, register_prefix

__all__ = ["AffectDataset", "Modality", "DATASETS", "dataset_table", "load_dataset", "register_dataset",
           "register_prefix"]
