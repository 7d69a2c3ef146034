"""Tests of mmaffect.metrics against hand-worked cases and independent sklearn/scipy computations."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy.stats import pearsonr
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    precision_recall_fscore_support,
    precision_score,
    recall_score,
    roc_auc_score,
)

from mmaffect.metrics import (
    binary_metrics,
    classification_metrics,
    classification_report,
    multilabel_metrics,
    regression_metrics,
    sentiment_metrics,
)

SEEDS = [0, 1, 2, 3, 4]


def approx(x: float) -> object:
    """Equality up to float rounding: the references compute the same quantities in another order."""
    return pytest.approx(x, rel=1e-9, abs=1e-9)


# --------------------------------------------------------------------------------------------------------
# reference implementation of MMSA's __eval_mosei_regression, written independently of the module
# --------------------------------------------------------------------------------------------------------


def _mmsa_reference(test_preds: np.ndarray, test_truth: np.ndarray) -> dict[str, float]:
    def multiclass_acc(preds, truths):
        return np.sum(np.round(preds) == np.round(truths)) / float(len(truths))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        non_zeros = np.array([i for i, e in enumerate(test_truth) if e != 0])
        nz_truth = test_truth[non_zeros] > 0
        nz_preds = test_preds[non_zeros] > 0
        binary_truth = test_truth >= 0
        binary_preds = test_preds >= 0
        return {
            "acc2_has0": 100 * accuracy_score(binary_preds, binary_truth),
            "f1_has0": 100 * f1_score(binary_truth, binary_preds, average="weighted"),
            "acc2_non0": 100 * accuracy_score(nz_preds, nz_truth),
            "f1_non0": 100 * f1_score(nz_truth, nz_preds, average="weighted"),
            "acc7": 100 * multiclass_acc(np.clip(test_preds, -3.0, 3.0), np.clip(test_truth, -3.0, 3.0)),
            "acc5": 100 * multiclass_acc(np.clip(test_preds, -2.0, 2.0), np.clip(test_truth, -2.0, 2.0)),
            "acc3": 100 * multiclass_acc(np.clip(test_preds, -1.0, 1.0), np.clip(test_truth, -1.0, 1.0)),
            "mae": float(np.mean(np.absolute(test_preds - test_truth))),
            "corr": float(pearsonr(test_preds, test_truth)[0]),
        }


def _mosi_like(seed: int, n: int = 120) -> tuple[np.ndarray, np.ndarray]:
    """Targets on MOSI's grid (multiples of 1/3 and of 0.5, with zeros) and noisy predictions that hit
    exact .5 ties and go beyond [-3, 3]."""
    rng = np.random.default_rng(seed)
    target = np.concatenate([rng.integers(-6, 7, n // 2) / 2.0, rng.integers(-9, 10, n - n // 2) / 3.0])
    target[rng.choice(n, 10, replace=False)] = 0.0
    pred = target + rng.normal(0, 0.8, n)
    ties = rng.choice(n, n // 4, replace=False)
    pred[ties] = np.round(pred[ties] * 2) / 2  # many exact x.5 values
    pred[:3] = [3.7, -4.2, 2.5]
    return pred, target


# --------------------------------------------------------------------------------------------------------
# sentiment_metrics
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_sentiment_matches_mmsa_reference(seed: int) -> None:
    pred, target = _mosi_like(seed)
    got = sentiment_metrics(pred, target)
    ref = _mmsa_reference(pred, target)
    assert set(got) == set(ref)
    for key, value in ref.items():
        assert got[key] == approx(value), key
        assert type(got[key]) is float, key


def test_has0_vs_non0_hand_worked() -> None:
    target = [0, 0, 1, -1]
    pred = [0.1, -0.1, 1, -1]
    m = sentiment_metrics(pred, target)
    # has0: y = target >= 0 = [T, T, T, F], y^ = pred >= 0 = [T, F, T, F] -> 3/4 right
    assert m["acc2_has0"] == approx(75.0)
    # F1(T): P = 2/2, R = 2/3 -> 0.8, support 3; F1(F): P = 1/2, R = 1/1 -> 2/3, support 1
    # weighted = (3 * 0.8 + 1 * 2/3) / 4 = 0.766666...
    assert m["f1_has0"] == approx(100 * (3 * 0.8 + 2 / 3) / 4)
    # non0 keeps samples 2, 3 only: y = [T, F], y^ = [T, F]
    assert m["acc2_non0"] == approx(100.0)
    assert m["f1_non0"] == approx(100.0)
    # rounded: pred [0, -0, 1, -1] == target [0, 0, 1, -1]
    assert m["acc7"] == m["acc5"] == m["acc3"] == approx(100.0)
    assert m["mae"] == approx((0.1 + 0.1) / 4)


def test_rounding_ties_half_to_even_and_clipping() -> None:
    pred = [2.5, -0.5, 3.7, 1.5, -2.5, 0.5]
    target = [2, 0, 3, 2, -3, 0]
    m = sentiment_metrics(pred, target)
    # acc7: clip [-3, 3] -> [2.5, -0.5, 3, 1.5, -2.5, 0.5] -> round-half-even [2, -0, 3, 2, -2, 0]
    #   vs target [2, 0, 3, 2, -3, 0]: only -2.5 -> -2 != -3 is wrong -> 5/6
    #   (half-away-from-zero would give [3, -1, 4->3 (clipped first), 2, -3, 1] -> 3/6)
    assert m["acc7"] == approx(100 * 5 / 6)
    # acc5: clip [-2, 2] -> [2, -0.5, 2, 1.5, -2, 0.5] -> [2, -0, 2, 2, -2, 0]; target -> [2, 0, 2, 2, -2, 0]
    assert m["acc5"] == approx(100.0)
    # acc3: clip [-1, 1] -> [1, -0.5, 1, 1, -1, 0.5] -> [1, -0, 1, 1, -1, 0]; target -> [1, 0, 1, 1, -1, 0]
    assert m["acc3"] == approx(100.0)
    # mae uses unclipped values: |0.5| + |-0.5| + |0.7| + |-0.5| + |0.5| + |0.5| = 3.2
    assert m["mae"] == approx(3.2 / 6)


def test_all_zero_targets_non0_is_nan() -> None:
    pred = [0.5, -1.0, 0.2]
    target = [0.0, 0.0, 0.0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = sentiment_metrics(pred, target)
    assert math.isnan(m["acc2_non0"]) and math.isnan(m["f1_non0"])
    # y = [T, T, T], y^ = [T, F, T]
    assert m["acc2_has0"] == approx(100 * 2 / 3)
    # only class T has support: F1(T) = 2*2 / (2*2 + 0 + 1) = 0.8 with weight 1
    assert m["f1_has0"] == approx(80.0)
    # round: [0, -1, 0] vs [0, 0, 0]
    assert m["acc7"] == m["acc5"] == m["acc3"] == approx(100 * 2 / 3)
    assert m["mae"] == approx(1.7 / 3)
    assert math.isnan(m["corr"])  # target is constant


def test_constant_prediction_corr_nan_without_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = sentiment_metrics([1.0, 1.0, 1.0, 1.0], [0.0, 1.0, 2.0, 3.0])
        r = regression_metrics([1.0, 1.0], [0.0, 1.0])
    assert math.isnan(m["corr"]) and math.isnan(r["corr"])
    assert m["mae"] == approx(1.0)


@pytest.mark.parametrize("seed", SEEDS)
def test_pearson_matches_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    target = rng.normal(size=40)
    pred = 0.5 * target + rng.normal(size=40)
    assert regression_metrics(pred, target)["corr"] == approx(pearsonr(pred, target)[0])
    assert sentiment_metrics(pred, target)["corr"] == approx(pearsonr(pred, target)[0])


def test_column_vectors_accepted() -> None:
    pred, target = _mosi_like(7, 30)
    assert sentiment_metrics(pred[:, None], target[:, None]) == sentiment_metrics(pred, target)


# --------------------------------------------------------------------------------------------------------
# regression_metrics
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_regression_threshold_vs_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    target = rng.integers(1, 10, 60).astype(float)  # e.g. a 1-9 valence scale, with values == threshold
    pred = target + rng.normal(0, 1.5, 60)
    m = regression_metrics(pred, target, threshold=5.0)
    assert set(m) == {"mae", "corr", "acc2", "f1"}
    assert m["acc2"] == approx(100 * accuracy_score(target >= 5, pred >= 5))
    assert m["f1"] == approx(100 * f1_score(target >= 5, pred >= 5, average="weighted"))
    assert m["mae"] == approx(float(np.mean(np.abs(pred - target))))
    assert set(regression_metrics(pred, target)) == {"mae", "corr"}


def test_regression_threshold_hand_worked() -> None:
    # threshold 5: y = [F, T, T, F], y^ = [F, T, F, T] -> 2/4
    m = regression_metrics([1.0, 5.0, 4.9, 6.0], [2.0, 5.0, 7.0, 3.0], threshold=5)
    assert m["acc2"] == approx(50.0)
    # F1(F) = 2*1/(2+1+1) = 0.5, F1(T) = 0.5 -> weighted 0.5
    assert m["f1"] == approx(50.0)
    assert m["mae"] == approx((1 + 0 + 2.1 + 3) / 4)


# --------------------------------------------------------------------------------------------------------
# classification_metrics / classification_report
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_classification_vs_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    target = rng.choice(4, size=80, p=[0.5, 0.3, 0.15, 0.05])
    pred = np.where(rng.random(80) < 0.6, target, rng.integers(0, 5, 80))  # class 4 never true
    m = classification_metrics(pred, target)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # balanced_accuracy warns about y_pred classes not in y_true
        ref_wacc = balanced_accuracy_score(target, pred)
    assert m["acc"] == approx(100 * accuracy_score(target, pred))
    assert m["wacc"] == approx(100 * ref_wacc)
    assert m["f1_weighted"] == approx(100 * f1_score(target, pred, average="weighted", zero_division=0))
    assert m["f1_macro"] == approx(100 * f1_score(target, pred, average="macro", zero_division=0))
    assert m["precision_macro"] == approx(
        100 * precision_score(target, pred, average="macro", zero_division=0)
    )
    assert m["recall_macro"] == approx(100 * recall_score(target, pred, average="macro", zero_division=0))
    assert all(type(v) is float for v in m.values())


def test_absent_class_hand_worked() -> None:
    target = [0, 0, 0, 0, 1, 1]
    pred = [0, 0, 0, 2, 1, 0]  # class 2 is predicted once but never true
    m = classification_metrics(pred, target, num_classes=3)
    assert m["acc"] == approx(100 * 4 / 6)
    # recall(0) = 3/4, recall(1) = 1/2; class 2 is not in target -> wacc = (0.75 + 0.5) / 2
    assert m["wacc"] == approx(62.5)
    # sklearn's label set is {0, 1, 2}: recall_macro = (0.75 + 0.5 + 0) / 3
    assert m["recall_macro"] == approx(100 * 1.25 / 3)
    # precision: 0 -> 3/4, 1 -> 1/1, 2 -> 0/1
    assert m["precision_macro"] == approx(100 * 1.75 / 3)
    # F1: 0 -> 0.75, 1 -> 2/3, 2 -> 0; weighted by support (4, 2, 0)
    assert m["f1_weighted"] == approx(100 * (4 * 0.75 + 2 * 2 / 3) / 6)
    assert m["f1_weighted"] == approx(100 * f1_score(target, pred, average="weighted", zero_division=0))
    assert m["f1_macro"] == approx(100 * (0.75 + 2 / 3) / 3)

    rep = classification_report(pred, target, ["neu", "hap", "ang"])
    assert list(rep["per_class"]) == ["neu", "hap", "ang"]
    assert [rep["per_class"][c]["support"] for c in ("neu", "hap", "ang")] == [4, 2, 0]
    assert rep["per_class"]["ang"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert rep["per_class"]["neu"]["recall"] == approx(75.0)
    assert rep["per_class"]["hap"]["precision"] == approx(100.0)
    assert rep["confusion"] == [[3, 0, 1], [1, 1, 0], [0, 0, 0]]
    assert all(type(v) is int for row in rep["confusion"] for v in row)


@pytest.mark.parametrize("seed", SEEDS)
def test_report_vs_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    target = rng.integers(0, 3, 50)  # class 3 ("sad") never true nor predicted
    pred = np.where(rng.random(50) < 0.5, target, rng.integers(0, 3, 50))
    names = ["neu", "hap", "ang", "sad"]
    rep = classification_report(pred, target, names)
    prec, rec, f1, sup = precision_recall_fscore_support(
        target, pred, labels=[0, 1, 2, 3], average=None, zero_division=0
    )
    for i, name in enumerate(names):
        row = rep["per_class"][name]
        assert row["precision"] == approx(100 * prec[i])
        assert row["recall"] == approx(100 * rec[i])
        assert row["f1"] == approx(100 * f1[i])
        assert row["support"] == int(sup[i]) == int(np.sum(target == i))
    cm = np.array(rep["confusion"])
    for i in range(4):
        for j in range(4):
            assert cm[i, j] == np.sum((target == i) & (pred == j))


@pytest.mark.parametrize("seed", SEEDS)
def test_argmax_of_probabilities_equals_labels(seed: int) -> None:
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(30, 5))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    target = rng.integers(0, 5, 30)
    labels = probs.argmax(axis=1)
    assert classification_metrics(probs, target) == classification_metrics(labels, target)
    assert classification_metrics(logits, target, num_classes=5) == classification_metrics(labels, target)
    names = list("abcde")
    assert classification_report(probs, target, names) == classification_report(labels, target, names)


# --------------------------------------------------------------------------------------------------------
# binary_metrics / multilabel_metrics
# --------------------------------------------------------------------------------------------------------


def test_binary_hand_worked() -> None:
    prob = [0.9, 0.4, 0.6, 0.2]
    target = [1, 1, 0, 0]
    m = binary_metrics(prob, target)
    # pred = [1, 0, 1, 0]: right on samples 0 and 3
    assert m["acc"] == approx(50.0)
    # positive class: TP 1, FP 1, FN 1 -> F1 0.5; negative class likewise -> macro 0.5
    assert m["f1"] == approx(50.0) and m["f1_macro"] == approx(50.0)
    # pairs (pos, neg): (.9, .6) ok, (.9, .2) ok, (.4, .6) wrong, (.4, .2) ok -> AUC 3/4
    assert m["auc"] == approx(0.75)
    assert binary_metrics([0.5], [1])["acc"] == approx(100.0)  # 0.5 counts as positive


@pytest.mark.parametrize("seed", SEEDS)
def test_binary_vs_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    target = rng.integers(0, 2, 70)
    prob = np.clip(0.3 * target + rng.random(70) * 0.7, 0, 1)
    m = binary_metrics(prob, target)
    pred = (prob >= 0.5).astype(int)
    assert m["acc"] == approx(100 * accuracy_score(target, pred))
    assert m["f1"] == approx(100 * f1_score(target, pred, zero_division=0))
    assert m["f1_macro"] == approx(100 * f1_score(target, pred, average="macro", zero_division=0))
    assert m["auc"] == approx(roc_auc_score(target, prob))


def test_binary_single_class_auc_nan() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = binary_metrics([0.2, 0.7, 0.9], [1, 1, 1])
    assert math.isnan(m["auc"])
    assert m["acc"] == approx(100 * 2 / 3)


def test_multilabel_hand_worked() -> None:
    prob = [[0.9, 0.1], [0.5, 0.7], [0.2, 0.3]]
    target = [[1, 0], [0, 1], [0, 0]]
    m = multilabel_metrics(prob, target, tag_names=["happy", "sad"])
    # present = prob >= 0.5 = [[1, 0], [1, 1], [0, 0]] (0.5 counts as present)
    # happy: TP 1, FP 1, FN 0 -> F1 2/3; sad: TP 1 -> F1 1
    assert m["f1_happy"] == approx(100 * 2 / 3) and m["f1_sad"] == approx(100.0)
    assert m["f1_macro"] == approx(100 * (2 / 3 + 1) / 2)
    # micro: TP 2, FP 1, FN 0 -> 4 / 5
    assert m["f1_micro"] == approx(80.0)
    # rows 0 and 2 exactly right
    assert m["subset_acc"] == approx(100 * 2 / 3)
    assert set(multilabel_metrics(prob, target)) == {"f1_micro", "f1_macro", "subset_acc", "f1_0", "f1_1"}


@pytest.mark.parametrize("seed", SEEDS)
def test_multilabel_vs_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    target = (rng.random((60, 6)) < 0.3).astype(int)
    prob = np.clip(0.4 * target + 0.6 * rng.random((60, 6)), 0, 1)
    m = multilabel_metrics(prob, target)
    pred = (prob >= 0.5).astype(int)
    assert m["f1_micro"] == approx(100 * f1_score(target, pred, average="micro", zero_division=0))
    assert m["f1_macro"] == approx(100 * f1_score(target, pred, average="macro", zero_division=0))
    assert m["subset_acc"] == approx(100 * accuracy_score(target, pred))  # sklearn: exact-match ratio
    for k in range(6):
        assert m[f"f1_{k}"] == approx(100 * f1_score(target[:, k], pred[:, k], zero_division=0))


# --------------------------------------------------------------------------------------------------------
# input validation
# --------------------------------------------------------------------------------------------------------


def test_nan_and_inf_raise_naming_argument() -> None:
    with pytest.raises(ValueError, match=r"pred contains 1 non-finite"):
        sentiment_metrics([0.1, np.nan, 1.0], [0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match=r"target contains 2 non-finite"):
        sentiment_metrics([0.1, 0.2, 1.0], [np.inf, 1.0, np.nan])
    with pytest.raises(ValueError, match=r"pred contains 1 non-finite"):
        regression_metrics([np.nan, 1.0], [0.0, 1.0])
    with pytest.raises(ValueError, match=r"pred contains 1 non-finite"):
        classification_metrics([[0.1, np.nan], [0.3, 0.7]], [0, 1])
    with pytest.raises(ValueError, match=r"target contains 1 non-finite"):
        classification_metrics([0, 1], [0, np.nan])
    with pytest.raises(ValueError, match=r"prob_pos contains 1 non-finite"):
        binary_metrics([0.2, np.nan], [0, 1])
    with pytest.raises(ValueError, match=r"prob contains 1 non-finite"):
        multilabel_metrics([[0.2, np.inf]], [[0, 1]])


def test_length_and_shape_mismatch_raise() -> None:
    with pytest.raises(ValueError, match=r"same length, got 3 and 2"):
        sentiment_metrics([0.1, 0.2, 0.3], [0.0, 1.0])
    with pytest.raises(ValueError, match=r"same length"):
        regression_metrics([0.1], [0.0, 1.0], threshold=0.0)
    with pytest.raises(ValueError, match=r"same length"):
        classification_metrics([0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match=r"same length"):
        binary_metrics([0.1, 0.9], [1])
    with pytest.raises(ValueError, match=r"same shape"):
        multilabel_metrics([[0.1, 0.9]], [[1, 0], [0, 1]])
    with pytest.raises(ValueError, match=r"empty"):
        sentiment_metrics([], [])


def test_bad_labels_raise() -> None:
    with pytest.raises(ValueError, match=r"integer"):
        classification_metrics([0.5, 1.0], [0, 1])
    with pytest.raises(ValueError, match=r"num_classes"):
        classification_metrics([0, 3], [0, 1], num_classes=3)
    with pytest.raises(ValueError, match=r"score columns"):
        classification_metrics(np.zeros((2, 4)), [0, 1], num_classes=3)
    with pytest.raises(ValueError, match=r"class_names"):
        classification_report([0, 2], [0, 1], ["a", "b"])
    with pytest.raises(ValueError, match=r"only 0 and 1"):
        binary_metrics([0.1, 0.9], [0, 2])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        binary_metrics([-0.1, 0.9], [0, 1])
    with pytest.raises(ValueError, match=r"tag_names"):
        multilabel_metrics([[0.1, 0.9]], [[0, 1]], tag_names=["a"])
