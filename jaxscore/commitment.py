"""Layer commitment on stimuli disjoint from those of the reported score.

Brain-Score commits a model's layer to a region by scoring every layer on a
benchmark and keeping the best, then reports that layer's score, often on
the same stimuli: the choice leaks into the number. Here the benchmark's
stimuli are split once (seeded; stratified by the benchmark's labels, e.g.
``object_name``, when it has them) into a commitment half and a scoring half.
Every layer is scored with cross-validation splits drawn inside the
commitment half only; the best layer (highest raw score) is
committed; its reported score uses splits drawn inside the scoring half only.
A split's train and test stimuli therefore never leave their half, and no
stimulus that helped choose the layer enters the reported score.

The ceiling stays the benchmark's (computed from the recordings alone, on all
stimuli); it involves no model and no choice.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import jax
import numpy as np

from jaxscore import kernels
from jaxscore.benchmark import BenchmarkScore, LayerScore, NeuralBenchmark


@dataclasses.dataclass(frozen=True)
class Partition:
  """Disjoint halves of a benchmark's stimuli (indices in its order).

  Attributes:
    commitment: (n_commitment,) sorted indices used to choose the layer.
    scoring: (n_scoring,) sorted indices used for the reported score.
    seed: the seed of the draw.
  """

  commitment: np.ndarray
  scoring: np.ndarray
  seed: int


def partition(
  n_stimuli: int, *, labels: np.ndarray | None = None, seed: int = 0
) -> Partition:
  """Halves ``n_stimuli`` stimuli, within each label when ``labels`` is given.

  Args:
    n_stimuli: number of stimuli.
    labels: (n_stimuli,) class of each stimulus, or None.
    seed: seed of the draw.

  Returns:
    Partition; with labels, each class puts ``floor(n_class / 2)`` members in
    the commitment half (the odd one out goes to scoring).
  """
  if n_stimuli < 12:
    raise ValueError(
      f"n_stimuli must be at least 12 to halve into cross-validated parts, "
      f"got {n_stimuli}."
    )
  if labels is None:
    labels = np.zeros(n_stimuli, np.int32)
  labels = np.asarray(labels)
  if labels.shape != (n_stimuli,):
    raise ValueError(f"labels must have shape ({n_stimuli},), got {labels.shape}.")
  key = jax.random.fold_in(jax.random.key(seed), 2)
  # one random 32-bit sort key per stimulus: the draw is the same with or
  # without 64-bit JAX
  order = np.asarray(jax.random.bits(key, (n_stimuli,), dtype=np.uint32))
  commitment = []
  for label in np.unique(labels):
    members = np.nonzero(labels == label)[0]
    members = members[np.argsort(order[members], kind="stable")]
    commitment.append(members[: len(members) // 2])
  commitment = np.sort(np.concatenate(commitment))
  scoring = np.setdiff1d(np.arange(n_stimuli), commitment)
  return Partition(commitment=commitment, scoring=scoring, seed=seed)


def half_splits(
  benchmark: NeuralBenchmark, indices: np.ndarray, *, seed: int
) -> kernels.Splits:
  """The benchmark's kind of splits (same count, train size, stratification),
  drawn inside ``indices`` and returned as indices into all its stimuli."""
  indices = np.asarray(indices)
  key = jax.random.fold_in(jax.random.key(seed), 3)
  if benchmark.labels is None:
    local = kernels.shuffle_splits(
      len(indices),
      n_splits=benchmark.n_splits,
      train_size=benchmark.train_size,
      key=key,
    )
  else:
    local = kernels.stratified_shuffle_splits(
      benchmark.labels[indices],
      n_splits=benchmark.n_splits,
      train_size=benchmark.train_size,
      key=key,
    )
  return kernels.Splits(
    train=indices[np.asarray(local.train)], test=indices[np.asarray(local.test)]
  )


def benchmark_partition(benchmark: NeuralBenchmark, *, seed: int) -> Partition:
  """``partition`` of the benchmark's stimuli, stratified by its labels."""
  return partition(benchmark.n_stimuli, labels=benchmark.labels, seed=seed)


def selection_value(layer: LayerScore) -> float:
  """What commitment maximises: the raw score (see ``BenchmarkScore.best``)."""
  return layer.raw.center


@dataclasses.dataclass(frozen=True)
class Commitment:
  """A committed layer and its score.

  Attributes:
    layer: the committed layer.
    selection: every layer scored on the commitment half.
    score: the committed layer scored on the scoring half.
    partition: which stimuli were used for what.
  """

  layer: str
  selection: BenchmarkScore
  score: BenchmarkScore
  partition: Partition

  def describe(self) -> str:
    p = self.partition
    return (
      f"layer {self.layer!r} committed on {len(p.commitment)} stimuli, "
      f"scored on {len(p.scoring)} disjoint stimuli (seed {p.seed})"
    )


def commit(
  benchmark: NeuralBenchmark,
  features: Mapping[str, np.ndarray],
  *,
  stimulus_ids=None,
  seed: int = 0,
  dtype=np.float32,
) -> Commitment:
  """Chooses a layer on the commitment half and scores it on the scoring half.

  Args:
    benchmark: the benchmark.
    features: ``{layer: (n_rows, ...)}`` as for ``score_features``.
    stimulus_ids: ids of the rows of plain arrays (see ``score_features``).
    seed: seed of the partition and of the splits inside each half.
    dtype: compute dtype.
  """
  halves = benchmark_partition(benchmark, seed=seed)
  selection = benchmark.score_features(
    features,
    stimulus_ids=stimulus_ids,
    splits=half_splits(benchmark, halves.commitment, seed=seed),
    dtype=dtype,
  )
  chosen = max(selection.layers, key=selection_value).layer
  score = benchmark.score_features(
    {chosen: features[chosen]},
    stimulus_ids=stimulus_ids,
    splits=half_splits(benchmark, halves.scoring, seed=seed),
    dtype=dtype,
  )
  return Commitment(layer=chosen, selection=selection, score=score, partition=halves)
