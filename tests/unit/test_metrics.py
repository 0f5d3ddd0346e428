"""Metric functions against cases worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from shoprank.eval import metrics as M


def test_rmse():
    assert M.rmse([1, 2, 3], [1, 2, 3]) == 0.0
    assert M.rmse([0, 0], [3, 4]) == pytest.approx(math.sqrt(12.5))
    assert math.isnan(M.rmse([], []))
    with pytest.raises(ValueError):
        M.rmse([1, 2], [1])


def test_ndcg_hand_computed():
    # labels in score order: 3, 2, 0 -> ideal order already: nDCG = 1
    assert M.ndcg_at_k([3, 2, 0], [0.9, 0.5, 0.1], 10) == pytest.approx(1.0)
    # model puts the 0 first: DCG = 0 + 3/log2(3) + 7/log2(4) ; IDCG = 7 + 3/log2(3) + 0
    dcg = 0 + 3 / math.log2(3) + 7 / 2
    idcg = 7 + 3 / math.log2(3)
    assert M.ndcg_at_k([3, 2, 0], [0.2, 0.5, 0.9], 10) == pytest.approx(dcg / idcg)
    # k=1 only looks at the top item
    assert M.ndcg_at_k([1, 0], [0.1, 0.9], 1) == 0.0
    assert math.isnan(M.ndcg_at_k([0, 0], [1, 2], 10))
    groups = ["a", "a", "b", "b"]
    v = M.mean_ndcg_at_k(groups, np.array([1, 0, 0, 1]), np.array([0.9, 0.1, 0.9, 0.1]), 10)
    assert v == pytest.approx((1.0 + 1 / math.log2(3)) / 2)


def test_map_and_recall():
    # relevant at rank 2 only: AP@5 = (1/2) / min(1, 5)
    assert M.average_precision_at_k({"x"}, ["a", "x", "b"], 5) == pytest.approx(0.5)
    # two relevant at ranks 1 and 3: (1/1 + 2/3) / 2
    assert M.average_precision_at_k({"a", "c"}, ["a", "b", "c"], 5) == pytest.approx((1 + 2 / 3) / 2)
    assert M.average_precision_at_k({"z"}, ["a", "b", "c", "d", "e", "z"], 5) == 0.0
    assert M.map_at_k([["x"], ["a"]], [["a", "x"], ["a"]], 5) == pytest.approx(0.75)
    assert M.recall_at_k({"a", "b"}, ["a", "c"], 100) == 0.5
    assert M.recall_at_k({"a", "b"}, ["c", "a", "b"], 2) == 0.5
    assert M.mean_recall_at_k([["a"], ["b"]], [["a"], ["c"]], 10) == 0.5


def test_accuracy_macro_f1():
    y, p = [0, 0, 1, 1], [0, 1, 1, 1]
    assert M.accuracy(y, p) == 0.75
    # class 0: tp1 fp0 fn1 -> 2/3 ; class 1: tp2 fp1 fn0 -> 4/5
    assert M.macro_f1(y, p) == pytest.approx((2 / 3 + 4 / 5) / 2)
    assert M.macro_f1(["a", "b"], ["a", "b"]) == 1.0


def test_spearman_and_auc():
    assert M.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert M.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ties get average ranks: x ranks 1.5,1.5,3 ; y ranks 1,2,3 -> r = 0.8660
    assert M.spearman([1, 1, 2], [1, 2, 3]) == pytest.approx(math.sqrt(3) / 2)
    assert math.isnan(M.spearman([1, 1, 1], [1, 2, 3]))
    assert M.roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert M.roc_auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)
