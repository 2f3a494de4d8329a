import jax
import numpy as np
import pytest

from jaxscore import kernels, uncertainty

from .test_scoring import _toy_benchmark


@pytest.fixture(scope="module")
def scored():
  benchmark, features = _toy_benchmark()
  rng = np.random.default_rng(5)
  noise = rng.standard_normal(features.shape)
  score = benchmark.score_features(
    {"good": features, "noise": noise}, stimulus_ids=benchmark.stimulus_ids
  )
  return benchmark, score


def test_bootstrap_recomputes_the_score_it_resamples(scored):
  benchmark, score = scored
  targets = benchmark.targets[np.asarray(score.splits.test)]
  for layer in score.layers:
    estimate = kernels.test_set_score(layer.predictions, targets)
    assert float(estimate) == pytest.approx(layer.raw.center, abs=1e-6)


def test_intervals_bracket_the_scores_and_are_reproducible(scored):
  benchmark, score = scored
  intervals, ceiling = uncertainty.bootstrap(benchmark, score, n_boot=300)
  again, _ = uncertainty.bootstrap(benchmark, score, n_boot=300)
  assert intervals == again  # bit-identical with the default key
  c = benchmark.ceiling.summary.center
  assert ceiling[0] < c < ceiling[1]
  for layer in score.layers:
    interval = intervals[layer.layer]
    assert interval.raw[0] < layer.raw.center < interval.raw[1]
    assert interval.ceiled[0] < layer.ceiled < interval.ceiled[1]
    assert interval.n_boot == 300 and interval.level == 0.95
  good, noise = intervals["good"], intervals["noise"]
  assert good.raw[0] > noise.raw[1]  # separated
  other, _ = uncertainty.bootstrap(benchmark, score, n_boot=300, key=jax.random.key(9))
  assert other["good"].raw != good.raw


def test_paired_comparison(scored):
  benchmark, score = scored
  same = uncertainty.compare(benchmark, (score, "good"), (score, "good"), n_boot=200)
  assert same.difference == 0 and same.p_value == 1.0
  better = uncertainty.compare(benchmark, (score, "good"), (score, "noise"), n_boot=200)
  assert better.difference > 0.3
  assert better.interval[0] > 0
  assert better.p_value < 0.05  # test sets of 6 stimuli: a few odd resamples
  with pytest.raises(ValueError, match="No layer 'fc'"):
    uncertainty.compare(benchmark, (score, "fc"), (score, "good"))


def test_bad_requests_are_refused(scored):
  benchmark, score = scored
  with pytest.raises(ValueError, match="n_boot must be at least 2"):
    uncertainty.bootstrap(benchmark, score, n_boot=1)
  other, _ = _toy_benchmark()
  other.identifier = "elsewhere"
  with pytest.raises(ValueError, match="not of elsewhere"):
    uncertainty.bootstrap(other, score, n_boot=10)


def test_refit_bootstrap_interval_is_reproducible_and_tracks_the_fit():
  benchmark, features = _toy_benchmark()
  ids = benchmark.stimulus_ids
  first = uncertainty.refit_bootstrap(benchmark, features, stimulus_ids=ids, n_boot=40)
  again = uncertainty.refit_bootstrap(benchmark, features, stimulus_ids=ids, n_boot=40)
  np.testing.assert_array_equal(first.samples, again.samples)
  assert first.samples.shape == (40,) and first.n_boot == 40
  low, high = first.raw
  assert low < high and low - 0.1 < first.estimate < high + 0.1
  assert np.std(first.samples) > 1e-3
  noise = np.random.default_rng(5).standard_normal(features.shape)
  worse = uncertainty.refit_bootstrap(benchmark, noise, stimulus_ids=ids, n_boot=40)
  assert worse.raw[1] < low
  with pytest.raises(ValueError, match="n_boot must be at least 2"):
    uncertainty.refit_bootstrap(benchmark, features, stimulus_ids=ids, n_boot=1)
