"""One compilation per shape: scoring a second layer of the same shape traces
nothing and compiles nothing."""

import jax
import numpy as np
import pytest

from jaxscore import kernels, scoring
from jaxscore.kernels import bootstrap, refit


def _layers(n_features, seed=0, n_stimuli=120, n_neuroids=5):
  rng = np.random.default_rng(seed)
  Y = rng.standard_normal((n_stimuli, n_neuroids))
  first, second = (
    Y @ rng.standard_normal((n_neuroids, n_features))
    + rng.standard_normal((n_stimuli, n_features))
    for _ in range(2)
  )
  splits = kernels.shuffle_splits(
    n_stimuli, n_splits=4, train_size=0.9, key=jax.random.key(seed)
  )
  return first, second, Y, splits


def _assert_no_new_work(events, jitted, before):
  assert events.traces == 0, f"{events.traces} new traces"
  assert events.compiles == 0, f"{events.compiles} new compilations"
  assert [fn._cache_size() for fn in jitted] == before


@pytest.mark.parametrize(
  "regression, n_features",
  [
    (scoring.Regression(kind="pls", n_components=4), 12),
    (scoring.Regression(kind="ridge"), 12),
    (scoring.Regression(kind="ridge", selection="gcv"), 12),
    (scoring.Regression(kind="ridge", solver="cholesky"), 12),
    (scoring.Regression(kind="pls", n_components=4), 300),  # stimulus Gram
  ],
  ids=["pls", "ridge-loo", "ridge-gcv", "ridge-cholesky", "pls-wide"],
)
def test_second_layer_of_a_shape_is_not_traced_again(
  regression, n_features, jax_events
):
  first, second, Y, splits = _layers(n_features)
  jitted = [
    scoring._split_correlations,
    scoring._moment_split_correlations,
    scoring._gram_split_correlations,
  ]
  with jax_events() as events:
    one = scoring.cross_validated_r(first, Y, splits, regression)
  assert events.traces > 0  # the recorder sees the first compilation
  before = [fn._cache_size() for fn in jitted]
  with jax_events() as events:
    two = scoring.cross_validated_r(second, Y, splits, regression)
  _assert_no_new_work(events, jitted, before)
  assert not np.array_equal(one.r, two.r)


def test_bootstraps_are_not_traced_again(jax_events):
  first, second, Y, splits = _layers(12)
  regression = scoring.Regression(kind="ridge", selection="gcv")
  targets = Y[np.asarray(splits.test)]
  predictions = [
    scoring.cross_validated_r(x, Y, splits, regression).predictions
    for x in (first, second)
  ]
  jitted = [bootstrap._test_set_distribution, refit._refit_distribution]

  def both(features, prediction, key):
    test_set = bootstrap.test_set_bootstrap(
      prediction, targets, n_boot=100, key=key, resample_neuroids=True
    )
    refitted = refit.refit_bootstrap(
      features, Y, splits.train, splits.test, regression.alphas, n_boot=6, key=key
    )
    return np.asarray(test_set), np.asarray(refitted)

  one = both(first, predictions[0], jax.random.key(0))
  before = [fn._cache_size() for fn in jitted]
  with jax_events() as events:
    two = both(second, predictions[1], jax.random.key(1))
  _assert_no_new_work(events, jitted, before)
  assert not np.array_equal(one[0], two[0]) and not np.array_equal(one[1], two[1])
