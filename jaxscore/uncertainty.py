"""Bootstrap intervals and paired comparisons of benchmark scores.

A score keeps each split's held-out predictions, so its uncertainty costs no
refit: the test stimuli of every split (and, hierarchically, the neuroids)
are resampled with replacement and the score recomputed from count-weighted
moments (``jaxscore.kernels.bootstrap``). The ceiling is resampled over
stimuli with its halvings fixed, and drawing the same neuroids as the score,
so that the ceiled score's interval carries the uncertainty of both. Two
models scored on the same benchmark share its splits; resampling both with
the same draws gives the distribution of their difference and a p-value.

The test-set bootstrap does not capture the variance of the fit itself;
``refit_bootstrap`` does: every resample draws each split's training stimuli
with replacement and refits a GCV ridge (``jaxscore.kernels.refit``), at the
cost of one fit per resample and split. The classic standard error over
splits stays in every score.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from jaxscore import kernels, scoring
from jaxscore.benchmark import BenchmarkScore, LayerScore, NeuralBenchmark
from jaxscore.data import assembly as assembly_lib
from jaxscore.kernels import refit as refit_lib


@dataclasses.dataclass(frozen=True)
class Interval:
  """Bootstrap intervals of one layer's score.

  Attributes:
    level: coverage, e.g. 0.95.
    n_boot: resamples.
    raw: percentile interval of the raw score.
    raw_bca: bias-corrected and accelerated interval of the raw score (NaN
      when the estimate falls outside the bootstrap distribution).
    ceiled: percentile interval of the ceiled score; None without ceiling.
  """

  level: float
  n_boot: int
  raw: tuple[float, float]
  raw_bca: tuple[float, float]
  ceiled: tuple[float, float] | None


@dataclasses.dataclass(frozen=True)
class Comparison:
  """Score of layer ``a`` minus score of layer ``b`` on the same resamples."""

  a: str
  b: str
  difference: float  # on the data as scored
  interval: tuple[float, float]  # percentile interval of the difference
  p_value: float  # two-sided, H0: no difference
  level: float
  n_boot: int


def _pair(values) -> tuple[float, float]:
  low, high = np.asarray(values, np.float64)
  return float(low), float(high)


def _test_targets(benchmark: NeuralBenchmark, score: BenchmarkScore) -> np.ndarray:
  """(n_splits, n_test, n_neuroids) measured responses of the test stimuli."""
  return benchmark.targets[np.asarray(score.splits.test)]


def _key(benchmark: NeuralBenchmark, key):
  return jax.random.fold_in(jax.random.key(benchmark.seed), 2) if key is None else key


def bootstrap(
  benchmark: NeuralBenchmark,
  score: BenchmarkScore,
  *,
  n_boot: int = 1000,
  key: jax.Array | None = None,
  level: float = 0.95,
  resample_neuroids: bool = True,
) -> tuple[dict[str, Interval], tuple[float, float] | None]:
  """Intervals for every layer of ``score`` and for the ceiling.

  Args:
    benchmark: the benchmark that produced ``score``.
    score: its result (it holds the held-out predictions and splits).
    n_boot: resamples.
    key: PRNG key; default derived from the benchmark's seed, so that a
      rerun gives bit-identical intervals.
    level: coverage.
    resample_neuroids: resample neuroids as well as stimuli (hierarchical),
      so that the interval speaks for other neurons of the same area.

  Returns:
    ({layer: Interval}, percentile interval of the ceiling or None).
  """
  if n_boot < 2:
    raise ValueError(f"n_boot must be at least 2, got {n_boot}.")
  _check_same_benchmark(benchmark, score)
  key = _key(benchmark, key)
  targets = _test_targets(benchmark, score)
  ceiling_samples = ceiling_interval = None
  if score.ceiling is not None:
    trials = assembly_lib.repetition_array(benchmark.assembly)
    ceiling_samples = kernels.ceiling_bootstrap(
      trials,
      benchmark.ceiling_masks(),
      n_boot=n_boot,
      key=key,
      resample_neuroids=resample_neuroids,
    )
    ceiling_interval = _pair(kernels.percentile_interval(ceiling_samples, level))
  intervals = {}
  for layer in score.layers:
    samples = kernels.test_set_bootstrap(
      layer.predictions,
      targets,
      n_boot=n_boot,
      key=key,
      resample_neuroids=resample_neuroids,
    )
    estimate = kernels.test_set_score(layer.predictions, targets)
    jackknife = kernels.jackknife_test_set(
      layer.predictions, targets, resample_neuroids=resample_neuroids
    )
    ceiled = None
    if ceiling_samples is not None:
      ceiled_samples = kernels.ceiled_bootstrap(
        samples, ceiling_samples, score.normalization
      )
      ceiled = _pair(kernels.percentile_interval(ceiled_samples, level))
    intervals[layer.layer] = Interval(
      level=level,
      n_boot=n_boot,
      raw=_pair(kernels.percentile_interval(samples, level)),
      raw_bca=_pair(kernels.bca_interval(samples, estimate, jackknife, level)),
      ceiled=ceiled,
    )
  return intervals, ceiling_interval


def compare(
  benchmark: NeuralBenchmark,
  a: tuple[BenchmarkScore, str],
  b: tuple[BenchmarkScore, str],
  *,
  n_boot: int = 1000,
  key: jax.Array | None = None,
  level: float = 0.95,
  resample_neuroids: bool = True,
) -> Comparison:
  """Paired bootstrap of the raw score of layer a minus that of layer b.

  Args:
    benchmark: the benchmark both scores come from.
    a, b: (score, layer name) pairs; the layers may belong to one model or
      to two models scored with the same splits.
    n_boot, key, level, resample_neuroids: as in ``bootstrap``.
  """
  (score_a, layer_a), (score_b, layer_b) = a, b
  for score in (score_a, score_b):
    _check_same_benchmark(benchmark, score)
  if not np.array_equal(score_a.splits.test, score_b.splits.test):
    raise ValueError(
      "The two scores were computed on different splits; a paired comparison "
      "needs the same splits (score both with the benchmark's defaults)."
    )
  pred_a = _layer(score_a, layer_a).predictions
  pred_b = _layer(score_b, layer_b).predictions
  targets = _test_targets(benchmark, score_a)
  differences = kernels.paired_difference(
    pred_a,
    pred_b,
    targets,
    n_boot=n_boot,
    key=_key(benchmark, key),
    resample_neuroids=resample_neuroids,
  )
  observed = kernels.test_set_score(pred_a, targets) - kernels.test_set_score(
    pred_b, targets
  )
  return Comparison(
    a=layer_a,
    b=layer_b,
    difference=float(observed),
    interval=_pair(kernels.percentile_interval(differences, level)),
    p_value=float(kernels.bootstrap_p_value(differences)),
    level=level,
    n_boot=n_boot,
  )


def _layer(score: BenchmarkScore, name: str) -> LayerScore:
  for layer in score.layers:
    if layer.layer == name:
      return layer
  raise ValueError(
    f"No layer {name!r} in the score; it has "
    f"{', '.join(s.layer for s in score.layers)}."
  )


def _check_same_benchmark(benchmark: NeuralBenchmark, score: BenchmarkScore):
  if score.benchmark != benchmark.identifier:
    raise ValueError(
      f"The score is of {score.benchmark}, not of {benchmark.identifier}."
    )


@dataclasses.dataclass(frozen=True)
class RefitInterval:
  """Full-refit bootstrap of one layer's GCV-ridge score.

  Attributes:
    level: coverage, e.g. 0.95.
    n_boot: resamples.
    estimate: the GCV-ridge score on the data as given (no resampling).
    raw: percentile interval of the refitted scores.
    samples: (n_boot,) the refitted scores.
  """

  level: float
  n_boot: int
  estimate: float
  raw: tuple[float, float]
  samples: np.ndarray


def refit_bootstrap(
  benchmark: NeuralBenchmark,
  features,
  *,
  stimulus_ids=None,
  n_boot: int = 100,
  key: jax.Array | None = None,
  level: float = 0.95,
  resample_neuroids: bool = False,
  dtype=None,
  solver: str = "auto",
) -> RefitInterval:
  """Interval of a layer's score over refits on resampled training stimuli.

  Uses ridge with the penalty chosen per neuroid by GCV from the benchmark's
  ``regression.alphas`` (whatever its regression kind: GCV is what makes a
  refit per resample affordable), re-chosen in every resample, on the
  benchmark's own splits; each refit predicts its split's unchanged test
  stimuli. Layers wider than the training split are refused (see
  ``kernels.refit``).

  Args:
    benchmark: the benchmark whose targets and splits are used.
    features: (n_stimuli, n_features) layer features (or a DataArray with a
      ``stimulus_id`` coordinate), as for ``benchmark.score_features``.
    stimulus_ids: ids of the rows of a plain array.
    n_boot: resamples; each costs one ridge fit per split.
    key: PRNG key; default derived from the benchmark's seed (the same as
      ``bootstrap``'s, so a hierarchical run draws the same neuroids).
    level: coverage.
    resample_neuroids: resample neuroids too.
    dtype: compute dtype; default float32 (float64 if 64-bit JAX is on).
    solver: ``"eigh"``, ``"cholesky"`` or ``"auto"``.
  """
  if n_boot < 2:
    raise ValueError(f"n_boot must be at least 2, got {n_boot}.")
  if dtype is None:
    dtype = np.float64 if jax.config.jax_enable_x64 else np.float32
  dtype = scoring.resolve_dtype(dtype)
  aligned = benchmark.align(features, stimulus_ids=stimulus_ids)
  splits = benchmark.splits()
  alphas = np.asarray(benchmark.regression.alphas)
  X, Y = np.asarray(aligned, dtype), np.asarray(benchmark.targets, dtype)
  samples = refit_lib.refit_bootstrap(
    X,
    Y,
    splits.train,
    splits.test,
    alphas,
    n_boot=n_boot,
    key=_key(benchmark, key),
    resample_neuroids=resample_neuroids,
    solver=solver,
  )
  gcv = scoring.Regression(kind="ridge", alphas=tuple(alphas), selection="gcv")
  fitted = scoring.cross_validated_r(X, Y, splits, gcv, dtype=dtype)
  estimate = scoring.Summary.from_values(fitted.r).center
  return RefitInterval(
    level=level,
    n_boot=n_boot,
    estimate=estimate,
    raw=_pair(kernels.percentile_interval(samples, level)),
    samples=np.asarray(samples),
  )
