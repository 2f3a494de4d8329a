"""Split-half ceiling against a plain numpy/scipy reference."""

import warnings

import jax
import numpy as np
import pytest
import scipy.stats

from jaxscore.kernels import (
  spearman_brown,
  split_half_ceiling,
  split_half_consistency,
  split_half_masks,
)

DTYPES = [np.float32, np.float64]
ATOL = {np.float32: 1e-5, np.float64: 1e-12}


def _reference(responses, first_half):
  """Brain-Score's recipe, one neuroid at a time, in float64."""
  responses = np.asarray(responses, np.float64)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)  # nanmean of empty slices
    a = np.nanmean(responses[first_half], axis=0)  # (n_stimuli, n_neuroids)
    b = np.nanmean(responses[~first_half], axis=0)
  out = []
  for j in range(responses.shape[2]):
    ok = np.isfinite(a[:, j]) & np.isfinite(b[:, j])
    r = scipy.stats.pearsonr(a[ok, j], b[ok, j])[0]
    out.append(2 * r / (1 + r))
  return np.array(out)


def _recordings(dtype, n_reps=8, n_stimuli=40, n_neuroids=5, seed=0):
  """Trials with stimulus-specific signal, 3-8 valid repetitions per stimulus
  (NaN-padded at the end) and a few extra NaN cells per neuroid."""
  rng = np.random.default_rng(seed)
  signal = rng.standard_normal((n_stimuli, n_neuroids)) * 2 + 20
  trials = signal + 1.5 * rng.standard_normal((n_reps, n_stimuli, n_neuroids))
  n_valid = rng.integers(3, n_reps + 1, n_stimuli)
  trials[np.arange(n_reps)[:, None] >= n_valid[None, :]] = np.nan
  trials[rng.random(trials.shape) < 0.05] = np.nan
  return trials.astype(dtype)


def test_masks_halve_the_repetitions():
  masks = np.asarray(split_half_masks(7, n_splits=20, key=jax.random.key(0)))
  assert masks.shape == (20, 7) and masks.dtype == bool
  np.testing.assert_array_equal(masks.sum(1), 3)  # floor(7 / 2) in the first half
  assert len({tuple(m) for m in masks.tolist()}) > 1
  again = split_half_masks(7, n_splits=20, key=jax.random.key(0))
  np.testing.assert_array_equal(masks, again)
  other = split_half_masks(7, n_splits=20, key=jax.random.key(1))
  assert not np.array_equal(masks, other)
  with pytest.raises(ValueError, match="n_reps must be an integer of at least 2"):
    split_half_masks(1, key=jax.random.key(0))


@pytest.mark.parametrize("dtype", DTYPES)
def test_spearman_brown(dtype):
  r = np.array([0.0, 0.5, 0.8, -0.2], dtype)
  out = spearman_brown(r)
  assert out.dtype == dtype
  np.testing.assert_allclose(out, 2 * r / (1 + r), rtol=1e-6)
  np.testing.assert_allclose(spearman_brown(0.5, n=3), 1.5 / 2.0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_consistency_matches_reference_with_missing_trials(dtype):
  trials = _recordings(dtype)
  first = np.zeros(8, bool)
  first[[0, 3, 5, 6]] = True
  c = split_half_consistency(trials, first)
  assert c.shape == (5,) and c.dtype == dtype
  np.testing.assert_allclose(c, _reference(trials, first), atol=ATOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_stimuli_missing_from_one_half_are_skipped(dtype):
  trials = _recordings(dtype, n_reps=6, seed=1)
  first = np.array([True, True, True, False, False, False])
  trials[3:, :4, :] = np.nan  # stimuli 0-3 have no second-half trial at all
  trials[:3, 10, 2] = np.nan  # stimulus 10 has no first-half trial for neuroid 2
  c = split_half_consistency(trials, first)
  assert np.all(np.isfinite(c))
  np.testing.assert_allclose(c, _reference(trials, first), atol=ATOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_ceiling_vmaps_over_splits(dtype):
  trials = _recordings(dtype, n_reps=9, seed=2)
  masks = split_half_masks(9, n_splits=6, key=jax.random.key(5))
  traces = 0

  def ceiling(responses, masks):
    nonlocal traces
    traces += 1
    return split_half_ceiling(responses, masks)

  jitted = jax.jit(ceiling)
  c = jitted(trials, masks)
  jitted(trials + 1, masks)
  assert traces == 1
  assert c.shape == (6, 5) and c.dtype == dtype
  expected = [_reference(trials, m) for m in np.asarray(masks)]
  np.testing.assert_allclose(c, expected, atol=ATOL[dtype])


def test_constant_neuroid_gives_nan():
  trials = _recordings(np.float64)
  trials[:, :, 1] = np.where(np.isnan(trials[:, :, 1]), np.nan, 3.0)
  c = np.asarray(split_half_consistency(trials, np.arange(8) < 4))
  assert np.isnan(c[1]) and np.all(np.isfinite(np.delete(c, 1)))


def test_bad_shapes_raise():
  with pytest.raises(ValueError, match="responses must be a 3-D array"):
    split_half_consistency(np.zeros((4, 5)), np.ones(4, bool))
  with pytest.raises(ValueError, match=r"first_half must have shape \(4,\)"):
    split_half_consistency(np.zeros((4, 5, 2)), np.ones(3, bool))
  with pytest.raises(ValueError, match="masks must be a 2-D array"):
    split_half_ceiling(np.zeros((4, 5, 2)), np.ones(4, bool))
