"""Shuffle and stratified splits against scikit-learn's splitters."""

import jax
import numpy as np
import pytest
from sklearn.model_selection import ShuffleSplit, StratifiedShuffleSplit

from jaxscore.kernels import (
  Splits,
  shuffle_splits,
  stratified_shuffle_splits,
  validate_splits,
)

OBJECTS = ["bear", "elephant", "face", "car", "dog", "apple", "chair", "plane"]


def _check_partition(splits: Splits, n_stimuli: int):
  train, test = np.asarray(splits.train), np.asarray(splits.test)
  assert train.dtype == np.int32 and test.dtype == np.int32
  for tr, te in zip(train, test, strict=True):
    assert np.all(np.diff(tr) > 0) and np.all(np.diff(te) > 0)  # sorted, unique
    assert np.intersect1d(tr, te).size == 0
    np.testing.assert_array_equal(np.union1d(tr, te), np.arange(n_stimuli))


def _sklearn_test_counts(labels, train_size, n_splits=10):
  splitter = StratifiedShuffleSplit(n_splits, train_size=train_size, random_state=0)
  classes = np.unique(labels)
  return np.array(
    [
      [np.sum(labels[test] == c) for c in classes]
      for _, test in splitter.split(np.zeros(len(labels)), labels)
    ]
  )


@pytest.mark.parametrize("n_stimuli", [30, 57, 640])
def test_shuffle_split_sizes_match_sklearn(n_stimuli):
  splits = shuffle_splits(n_stimuli, n_splits=4, key=jax.random.key(0))
  train, test = next(ShuffleSplit(1, train_size=0.9).split(np.zeros(n_stimuli)))
  assert splits.train.shape == (4, len(train))
  assert splits.test.shape == (4, len(test))
  _check_partition(splits, n_stimuli)


def test_shuffle_splits_depend_on_the_key_only():
  a = shuffle_splits(100, key=jax.random.key(1))
  b = shuffle_splits(100, key=jax.random.key(1))
  c = shuffle_splits(100, key=jax.random.key(2))
  np.testing.assert_array_equal(a.test, b.test)
  assert not np.array_equal(a.test, c.test)
  # Splits of one call differ from each other (independent draws).
  assert len({tuple(row) for row in np.asarray(a.test).tolist()}) == 10


def test_shuffle_splits_reject_tiny_sets():
  with pytest.raises(ValueError, match="1 test stimuli; both need at least 3"):
    shuffle_splits(10, key=jax.random.key(0))
  with pytest.raises(ValueError, match="train_size must be in"):
    shuffle_splits(100, train_size=1.2, key=jax.random.key(0))
  with pytest.raises(ValueError, match="n_splits must be a positive integer"):
    shuffle_splits(100, n_splits=0, key=jax.random.key(0))


def test_stratified_counts_match_sklearn_balanced():
  labels = np.repeat(OBJECTS, 80)  # the 640-image V4 set: 8 objects x 80
  splits = stratified_shuffle_splits(labels, key=jax.random.key(0))
  assert splits.train.shape == (10, 576) and splits.test.shape == (10, 64)
  _check_partition(splits, 640)
  classes = np.unique(labels)
  ours = [[np.sum(labels[te] == c) for c in classes] for te in np.asarray(splits.test)]
  np.testing.assert_array_equal(ours, _sklearn_test_counts(labels, 0.9))


@pytest.mark.parametrize("train_size", [0.9, 0.75])
def test_stratified_counts_match_sklearn_uneven(train_size):
  counts = {"a": 13, "b": 7, "c": 22, "d": 5, "e": 31, "f": 9}
  labels = np.repeat(list(counts), list(counts.values()))
  labels = np.random.default_rng(0).permutation(labels)  # interleaved classes
  splits = stratified_shuffle_splits(
    labels, n_splits=5, train_size=train_size, key=jax.random.key(3)
  )
  _check_partition(splits, len(labels))
  reference = _sklearn_test_counts(labels, train_size)
  # Without tied remainders sklearn's allocation is the same in every split.
  assert np.all(reference == reference[0])
  for test in np.asarray(splits.test):
    np.testing.assert_array_equal(
      [np.sum(labels[test] == c) for c in counts], reference[0]
    )


def test_stratified_ties_go_to_the_first_class():
  labels = np.repeat([2, 0, 1], 3)  # three classes of 3, train 4 of 9
  splits = stratified_shuffle_splits(labels, train_size=0.5, key=jax.random.key(0))
  for train in np.asarray(splits.train):
    # 4/3 each: floors 1, 1, 1 and one extra to class 0 (sorted label order).
    np.testing.assert_array_equal(np.bincount(labels[train], minlength=3), [2, 1, 1])
  # sklearn breaks this tie at random; the multiset of counts is the same.
  reference = _sklearn_test_counts(labels, 0.5)
  assert all(sorted(row) == [1, 2, 2] for row in reference.tolist())


def test_stratified_splits_depend_on_the_key_and_jit_once():
  labels = np.repeat(OBJECTS[:4], 20)
  traces = 0

  def draw(key):
    nonlocal traces
    traces += 1
    return stratified_shuffle_splits(labels, n_splits=3, key=key)

  jitted = jax.jit(draw)
  a, b = jitted(jax.random.key(0)), jitted(jax.random.key(1))
  assert traces == 1
  eager = stratified_shuffle_splits(labels, n_splits=3, key=jax.random.key(0))
  np.testing.assert_array_equal(a.test, eager.test)
  assert not np.array_equal(a.test, b.test)
  _check_partition(a, 80)


def test_stratified_errors():
  with pytest.raises(ValueError, match=r"only 1: \['z'\]"):
    stratified_shuffle_splits(
      np.array(["a"] * 10 + ["b"] * 10 + ["z"]), key=jax.random.key(0)
    )
  with pytest.raises(ValueError, match="at least the number of classes, 8"):
    stratified_shuffle_splits(np.repeat(OBJECTS, 4), key=jax.random.key(0))
  with pytest.raises(ValueError, match="labels must be a 1-D array"):
    stratified_shuffle_splits(np.zeros((4, 4)), key=jax.random.key(0))


def test_validate_accepts_sklearn_output():
  x = np.zeros(30)
  train, test = zip(
    *ShuffleSplit(5, train_size=0.8, random_state=0).split(x), strict=True
  )
  splits = validate_splits(train, test, 30)
  assert splits.train.shape == (5, 24) and splits.test.shape == (5, 6)
  assert splits.train.dtype == np.int32
  np.testing.assert_array_equal(splits.test[2], test[2])
  again = validate_splits(np.asarray(splits.train), np.asarray(splits.test), 30)
  np.testing.assert_array_equal(again.train, splits.train)


@pytest.mark.parametrize(
  ("train", "test", "message"),
  [
    ([[0, 1, 2], [0, 1, 3]], [[3, 4, 5], [4, 3, 5]], "split 1 has stimuli in both"),
    ([[0, 1, 1]], [[3, 4, 5]], r"split 0 repeats train indices \[1\]"),
    ([[0, 1, 2]], [[3, 4, 9]], r"split 0 has test indices outside \[0, 8\): \[9\]"),
    ([[0, 1, 2]], [[3, 4, -1]], "outside"),
    (
      [[0, 1, 2], [0, 1, 5, 6]],
      [[3, 4, 5], [2, 3, 4]],
      "split 0 has 3 train stimuli and split 1",
    ),
    ([[0, 1, 2]], [[3, 4, 5], [4, 5, 6]], "1 train sets and 2 test sets"),
    ([[0.0, 1.0, 2.0]], [[3, 4, 5]], "must hold integer stimulus indices"),
    ([[0, 1, 2]], [[3]], "split 0 has 1 test stimuli; at least 3"),
  ],
)
def test_validate_rejects(train, test, message):
  with pytest.raises(ValueError, match=message):
    validate_splits([np.asarray(t) for t in train], [np.asarray(t) for t in test], 8)


def test_splits_do_not_depend_on_64_bit_mode():
  # The same key must give the same splits whatever the float width, or
  # scores drift between machines configured differently.
  def draw():
    key = jax.random.key(7)
    labels = np.repeat(OBJECTS[:4], 25)
    return [
      np.asarray(shuffle_splits(100, n_splits=3, key=key).test),
      np.asarray(stratified_shuffle_splits(labels, n_splits=3, key=key).test),
    ]

  with jax.enable_x64(True):
    wide = draw()
  with jax.enable_x64(False):
    narrow = draw()
  for a, b in zip(wide, narrow, strict=True):
    np.testing.assert_array_equal(a, b)
