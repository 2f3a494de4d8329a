"""Train/test splits of the stimuli as rectangular index arrays.

Every split of a set has the same number of train and test stimuli, so the
splits stack into ``(n_splits, n_train)`` and ``(n_splits, n_test)`` int32
arrays that a caller can ``vmap`` over. The splits are Monte-Carlo (shuffle)
splits as in Brain-Score: test sets of different splits are drawn independently
and may overlap. Indices within a train or test set are sorted ascending.
"""

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Splits(NamedTuple):
  """Stacked train/test stimulus indices.

  Attributes:
    train: (n_splits, n_train) int32 indices of the training stimuli.
    test: (n_splits, n_test) int32 indices of the test stimuli.
  """

  train: jax.Array
  test: jax.Array


# A correlation over 2 test stimuli is always +-1; 3 is the least that can
# carry information (and far fewer than any real benchmark uses).
MIN_SET_SIZE = 3


def _split_sizes(n_stimuli: int, train_size: float) -> tuple[int, int]:
  """sklearn ShuffleSplit sizes: floor(train_size * n) train, the rest test."""
  if not 0 < train_size < 1:
    raise ValueError(f"train_size must be in the open range (0, 1), got {train_size}.")
  n_train = math.floor(train_size * n_stimuli)
  n_test = n_stimuli - n_train
  if n_train < MIN_SET_SIZE or n_test < MIN_SET_SIZE:
    raise ValueError(
      f"train_size={train_size} of n_stimuli={n_stimuli} gives {n_train} train "
      f"and {n_test} test stimuli; both need at least {MIN_SET_SIZE}."
    )
  return n_train, n_test


def _check_n_splits(n_splits: int) -> None:
  if not isinstance(n_splits, int | np.integer) or n_splits < 1:
    raise ValueError(f"n_splits must be a positive integer, got {n_splits!r}.")


def shuffle_splits(
  n_stimuli: int, *, n_splits: int = 10, train_size: float = 0.9, key
) -> Splits:
  """Monte-Carlo train/test splits, sized like sklearn's ShuffleSplit.

  Args:
    n_stimuli: number of stimuli to split.
    n_splits: number of independent splits.
    train_size: fraction of the stimuli in each training set; the training set
      has ``floor(train_size * n_stimuli)`` stimuli and the test set the rest.
    key: a ``jax.random`` key; each split uses its own key split from it.

  Returns:
    Splits with train (n_splits, n_train) and test (n_splits, n_test) int32.
  """
  _check_n_splits(n_splits)
  n_train, _ = _split_sizes(n_stimuli, train_size)

  def one_split(split_key):
    order = jax.random.permutation(split_key, n_stimuli).astype(jnp.int32)
    return jnp.sort(order[:n_train]), jnp.sort(order[n_train:])

  train, test = jax.vmap(one_split)(jax.random.split(key, n_splits))
  return Splits(train=train, test=test)


def _largest_remainder(counts: np.ndarray, n_draws: int) -> np.ndarray:
  """Draws per class that sklearn's ``_approximate_mode`` would allocate.

  Each class gets the floor of its proportional share; the draws still missing
  go to the classes with the largest remainders. sklearn breaks ties among
  equal remainders at random; here the earlier class (in sorted label order)
  wins, so the allocation is deterministic.
  """
  continuous = counts / counts.sum() * n_draws
  floored = np.floor(continuous)
  need = int(n_draws - floored.sum())
  remainder = continuous - floored
  # Stable sort on the negated remainder: largest first, ties by class order.
  order = np.argsort(-remainder, kind="stable")
  floored[order[:need]] += 1
  return floored.astype(np.int64)


def stratified_shuffle_splits(
  labels, *, n_splits: int = 10, train_size: float = 0.9, key
) -> Splits:
  """Monte-Carlo splits that keep each class's share, like StratifiedShuffleSplit.

  The per-class counts follow sklearn's StratifiedShuffleSplit: the training
  set takes ``floor(train_size * n_stimuli)`` stimuli, allocated over classes
  by largest remainder, and each class's remaining members form its test
  share. sklearn breaks ties between equal remainders at random per split;
  here they go to the class that sorts first, so every split has the same
  per-class counts and the arrays are rectangular. Which members of a class
  are held out is drawn with ``key``: every stimulus gets a random 32-bit
  integer sort key (integers, so the draw is the same with or without 64-bit
  mode), stimuli are ordered by (class, sort key) and static slices are taken,
  so the draw jits.

  Args:
    labels: (n_stimuli,) host-side array of class codes (ints or strings),
      e.g. ``object_name``.
    n_splits: number of independent splits.
    train_size: fraction of the stimuli in each training set.
    key: a ``jax.random`` key.

  Returns:
    Splits with train (n_splits, n_train) and test (n_splits, n_test) int32.
  """
  _check_n_splits(n_splits)
  labels = np.asarray(labels)
  if labels.ndim != 1:
    raise ValueError(
      f"labels must be a 1-D array with one class code per stimulus, got shape "
      f"{labels.shape}."
    )
  n_stimuli = labels.shape[0]
  n_train, n_test = _split_sizes(n_stimuli, train_size)
  classes, codes, counts = np.unique(labels, return_inverse=True, return_counts=True)
  if counts.min() < 2:
    few = classes[counts < 2].tolist()
    raise ValueError(
      f"every class in labels needs at least 2 members to be split; these have "
      f"only 1: {few}."
    )
  if n_train < len(classes) or n_test < len(classes):
    raise ValueError(
      f"train_size={train_size} of {n_stimuli} stimuli gives {n_train} train and "
      f"{n_test} test stimuli; both must be at least the number of classes, "
      f"{len(classes)}."
    )
  train_counts = _largest_remainder(counts, n_train)
  starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
  # Positions, in the (class, sort key) order, of train and test members.
  train_positions = np.concatenate(
    [np.arange(s, s + k) for s, k in zip(starts, train_counts, strict=True)]
  )
  test_positions = np.concatenate(
    [
      np.arange(s + k, s + c)
      for s, k, c in zip(starts, train_counts, counts, strict=True)
    ]
  )
  codes = jnp.asarray(codes.astype(np.int32))

  def one_split(split_key):
    sort_keys = jax.random.bits(split_key, (n_stimuli,), dtype=jnp.uint32)
    order = jnp.lexsort((sort_keys, codes)).astype(jnp.int32)  # class, then key
    return jnp.sort(order[train_positions]), jnp.sort(order[test_positions])

  train, test = jax.vmap(one_split)(jax.random.split(key, n_splits))
  return Splits(train=train, test=test)


def _as_index_rows(name: str, rows) -> list[np.ndarray]:
  if isinstance(rows, np.ndarray | jax.Array) and rows.ndim == 2:
    rows = list(np.asarray(rows))
  rows = [np.asarray(row) for row in rows]
  for i, row in enumerate(rows):
    if row.ndim != 1:
      raise ValueError(
        f"{name}[{i}] must be a 1-D array of stimulus indices, got shape {row.shape}."
      )
    if row.size and not np.issubdtype(row.dtype, np.integer):
      raise ValueError(
        f"{name}[{i}] must hold integer stimulus indices, got dtype {row.dtype}."
      )
  return rows


def validate_splits(train, test, n_stimuli: int) -> Splits:
  """Checks splits made elsewhere and stacks them into rectangular int32 arrays.

  Accepts anything that iterates to one index array per split: a list of
  arrays, a 2-D array, or the train and test halves of an sklearn splitter's
  output (``zip(*splitter.split(X, y))``).

  Args:
    train: n_splits sequences of training-stimulus indices, (n_splits, n_train).
    test: n_splits sequences of test-stimulus indices, (n_splits, n_test).
    n_stimuli: number of stimuli; every index must be in [0, n_stimuli).

  Returns:
    Splits with train (n_splits, n_train) and test (n_splits, n_test) int32.

  Raises:
    ValueError: naming the split and the problem: unequal numbers of train and
      test sets, non-integer or out-of-range indices, duplicates within a set,
      stimuli in both sets of a split, sets smaller than 3, or set sizes that
      differ between splits.
  """
  train_rows = _as_index_rows("train", train)
  test_rows = _as_index_rows("test", test)
  if len(train_rows) != len(test_rows):
    raise ValueError(
      f"train and test must hold one index set per split; got {len(train_rows)} "
      f"train sets and {len(test_rows)} test sets."
    )
  if not train_rows:
    raise ValueError("train and test must hold at least one split, got none.")
  for name, rows in (("train", train_rows), ("test", test_rows)):
    size = len(rows[0])
    for i, row in enumerate(rows):
      if len(row) != size:
        raise ValueError(
          f"all {name} sets must have the same size to stack; split 0 has {size} "
          f"{name} stimuli and split {i} has {len(row)}."
        )
      if len(row) < MIN_SET_SIZE:
        raise ValueError(
          f"split {i} has {len(row)} {name} stimuli; at least {MIN_SET_SIZE} "
          "are needed (a correlation over 2 stimuli is always +-1)."
        )
      bad = row[(row < 0) | (row >= n_stimuli)]
      if bad.size:
        raise ValueError(
          f"split {i} has {name} indices outside [0, {n_stimuli}): {bad[:5].tolist()}."
        )
      values, counts = np.unique(row, return_counts=True)
      if np.any(counts > 1):
        raise ValueError(
          f"split {i} repeats {name} indices {values[counts > 1][:5].tolist()}; "
          "each stimulus may appear once per set."
        )
  for i, (tr, te) in enumerate(zip(train_rows, test_rows, strict=True)):
    both = np.intersect1d(tr, te)
    if both.size:
      raise ValueError(
        f"split {i} has stimuli in both its train and test sets: {both[:5].tolist()}."
      )
  return Splits(
    train=jnp.asarray(np.stack(train_rows).astype(np.int32)),
    test=jnp.asarray(np.stack(test_rows).astype(np.int32)),
  )
