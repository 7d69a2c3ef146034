"""Published numbers to print beside ours, read from the results tables under the data root.

Only rows on the same data and split are marked ``comparable``; others (e.g. MMSA's MOSI runs on
the CMU standard folds with BERT features) are shown for orientation and say so.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from mmaffect.settings import data_root

_ERC = {"iemocap6-text": ("IEMOCAP", "6-class"), "meld7-text": ("MELD", "7-class emotion"),
        "meld3-text": ("MELD", "3-class sentiment")}
_MMSA_NAMES = {"tfn": "tfn", "lmf": "lmf", "lf-dnn": "lf_dnn", "ef-lstm": "ef_lstm", "mfn": "mfn",
               "graph-mfn": "graph_mfn", "mult": "mult", "misa": "misa", "self-mm": "self_mm"}


@dataclass(frozen=True)
class Reference:
    model: str
    metric: str
    value: float
    comparable: bool
    source: str

    def to_dict(self) -> dict:
        return asdict(self)


def _read(path: Path) -> pd.DataFrame | None:
    try:
        return pd.read_csv(path)
    except (OSError, pd.errors.ParserError):
        return None


def references(dataset: str, model: str, root: Path | None = None) -> list[Reference]:
    """Published results for ``dataset`` (and ``model`` where a table has it)."""
    table = Path(root or data_root()) / "published_results"
    refs: list[Reference] = []
    if dataset == "mosi-bclstm":
        same = _read(table / "mosi_bclstm_split_results.csv")
        if same is not None:
            refs += [Reference(f"{r.model} (contextual)", "acc2_has0", float(r.value), True,
                               f"{r.paper}; verified_here={r.verified_here}") for r in same.itertuples()]
        mmsa = _read(table / "mmsa_results.csv")
        if mmsa is not None and model in _MMSA_NAMES:
            rows = mmsa[(mmsa.dataset == "MOSI") & (mmsa.task == "regression") & (mmsa.model == _MMSA_NAMES[model])]
            for r in rows.drop_duplicates("model").itertuples():
                refs += [Reference(f"MMSA {r.model} (CMU std folds, BERT features: not comparable)", metric,
                                   float(value), False, r.source)
                         for metric, value in (("acc2_has0", r.Has0_acc_2), ("acc2_non0", r.Non0_acc_2),
                                               ("acc7", r.Mult_acc_7), ("mae", r.MAE / 100), ("corr", r.Corr / 100))]
    elif dataset in _ERC:
        erc = _read(table / "erc_results_conv_emotion.csv")
        if erc is not None:
            name, task = _ERC[dataset]
            rows = erc[(erc.dataset == name) & (erc.task == task) & (erc.metric == "W-Avg F1")]
            refs += [Reference(r.model + ("" if r.model == "RoBERTa" else " (contextual)"), "f1_weighted",
                               float(r.value), True, r.source) for r in rows.itertuples()]
    return refs
