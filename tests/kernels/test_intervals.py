"""Percentile and BCa intervals and the paired p-value against numpy and scipy."""

import types

import jax
import numpy as np
import pytest
import scipy.stats

from jaxscore.kernels import bootstrap, intervals

DTYPES = [np.float32, np.float64]
RTOL = {np.float32: 1e-6, np.float64: 1e-12}


def _means(rng, data, n_boot):
  """Bootstrap distribution of the mean, drawn with numpy."""
  rows = rng.integers(0, len(data), (n_boot, len(data)))
  return data[rows].mean(axis=1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_percentile_interval_is_numpy_percentile(dtype):
  samples = np.random.default_rng(0).gamma(2.0, size=(3, 1001)).astype(dtype)
  for level in (0.95, 0.9):
    got = intervals.percentile_interval(samples, level)
    tail = 50 * (1 - level)
    expected = np.percentile(samples, [tail, 100 - tail], axis=-1).T
    assert got.shape == (3, 2) and got.dtype == dtype
    np.testing.assert_allclose(got, expected, rtol=RTOL[dtype])


def _scipy_bca(data, statistic, samples, level=0.95):
  """scipy's BCa on our bootstrap distribution (no resamples of its own)."""
  given = types.SimpleNamespace(bootstrap_distribution=np.asarray(samples))
  result = scipy.stats.bootstrap(
    data,
    statistic,
    n_resamples=0,
    bootstrap_result=given,
    confidence_level=level,
    method="BCa",
  )
  return np.array(result.confidence_interval)


def test_bca_of_the_mean_is_scipys():
  rng = np.random.default_rng(1)
  data = rng.lognormal(size=40)  # skewed, so z0 and a are far from 0
  samples = _means(rng, data, 2000)
  jackknife = np.array([np.delete(data, i).mean() for i in range(len(data))])
  for level in (0.95, 0.8):
    got = intervals.bca_interval(samples, data.mean(), jackknife, level)
    expected = _scipy_bca((data,), np.mean, samples, level)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
  percentile = intervals.percentile_interval(samples)
  assert not np.allclose(got, percentile)  # the correction did something


def test_bca_with_independent_groups_is_scipys_multi_sample_form():
  # Two independently resampled samples, statistic mean(x) - mean(y): our
  # jackknife groups are scipy's per-sample jackknives.
  rng = np.random.default_rng(2)
  x, y = rng.exponential(size=25), rng.exponential(size=35)
  samples = _means(rng, x, 3000) - _means(rng, y, 3000)

  def difference(x, y, axis=-1):
    return np.mean(x, axis=axis) - np.mean(y, axis=axis)

  groups = (
    np.array([np.delete(x, i).mean() - y.mean() for i in range(len(x))]),
    np.array([x.mean() - np.delete(y, i).mean() for i in range(len(y))]),
  )
  got = intervals.bca_interval(samples, difference(x, y), groups)
  np.testing.assert_allclose(got, _scipy_bca((x, y), difference, samples), rtol=1e-12)


def test_acceleration():
  values = np.random.default_rng(3).standard_normal(30) ** 3
  u = values.mean() - values
  expected = (u**3).sum() / (6 * (u**2).sum() ** 1.5)
  np.testing.assert_allclose(intervals.acceleration(values), expected, rtol=1e-12)
  # Rows of a 2-D array are separate groups, each centred on its own mean.
  stacked = np.stack([values, values + 5])
  d = np.concatenate([u, u]) * 29 / 30
  np.testing.assert_allclose(
    intervals.acceleration(stacked),
    (d**3).sum() / (6 * (d**2).sum() ** 1.5),
    rtol=1e-12,
  )
  assert intervals.acceleration(np.ones(5)) == 0


def test_bootstrap_p_value():
  d = np.array([-1.0, 0.5, 1.0, 2.0, 3.0, 0.0, 4.0, 5.0, 6.0])
  # 2 of 9 at or below 0, 8 of 9 at or above: 2 (1 + 2) / 10.
  np.testing.assert_allclose(intervals.bootstrap_p_value(d), 0.6)
  np.testing.assert_allclose(intervals.bootstrap_p_value(-d), 0.6)
  np.testing.assert_allclose(intervals.bootstrap_p_value(d, null=-2.0), 0.2)
  assert intervals.bootstrap_p_value(np.zeros(99)) == 1
  assert intervals.bootstrap_p_value(np.ones(999)) == pytest.approx(2 / 1000)


def test_bad_arguments_raise():
  with pytest.raises(ValueError, match=r"level must be a number in \(0, 1\)"):
    intervals.percentile_interval(np.ones(5), 95)
  with pytest.raises(ValueError, match="samples must be 1-D"):
    intervals.bca_interval(np.ones((2, 5)), 1.0, np.ones(3))
  with pytest.raises(ValueError, match="at least one resample"):
    intervals.percentile_interval(np.ones(0))


def test_intervals_of_a_paired_test_set_bootstrap():
  # End to end on the kernels: a better and a worse model on the same splits.
  rng = np.random.default_rng(4)
  targets = rng.standard_normal((4, 30, 12)) + 100
  good = targets + rng.standard_normal(targets.shape)
  bad = targets + 3 * rng.standard_normal(targets.shape)
  key = jax.random.key(0)
  kwargs = dict(n_boot=300, key=key, resample_neuroids=True)
  samples = bootstrap.test_set_bootstrap(good, targets, **kwargs)
  estimate = bootstrap.test_set_score(good, targets)
  jackknife = bootstrap.jackknife_test_set(good, targets, resample_neuroids=True)
  low, high = np.asarray(intervals.bca_interval(samples, estimate, jackknife))
  p_low, p_high = np.asarray(intervals.percentile_interval(samples))
  assert low < estimate < high and p_low < estimate < p_high
  assert abs((high - low) - (p_high - p_low)) < 0.5 * (p_high - p_low)
  d = bootstrap.paired_difference(good, bad, targets, **kwargs)
  assert np.all(np.asarray(d) > 0)
  assert intervals.bootstrap_p_value(d) == pytest.approx(2 / 301)
