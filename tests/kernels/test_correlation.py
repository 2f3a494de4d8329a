"""pearson_r against scipy.stats.pearsonr."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from jaxscore.kernels import pearson_r

DTYPES = [np.float32, np.float64]
ATOL = {np.float32: 1e-5, np.float64: 1e-12}


def _scipy_r(x, y):
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  return np.array(
    [scipy.stats.pearsonr(x[:, j], y[:, j])[0] for j in range(x.shape[1])]
  )


@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_scipy(dtype):
  rng = np.random.default_rng(0)
  x = rng.standard_normal((40, 6))
  y = 0.5 * x + rng.standard_normal((40, 6))
  x, y = x.astype(dtype), y.astype(dtype)
  r = pearson_r(x, y)
  assert r.shape == (6,)
  assert r.dtype == dtype
  np.testing.assert_allclose(r, _scipy_r(x, y), atol=ATOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("offset", [1e3, 1e4, 1e5, 1e6])
def test_large_offsets_stay_accurate(dtype, offset):
  # Spike counts or probabilities sit far from zero; a one-pass formula in
  # float32 loses every digit here. The reference sees the same rounded data.
  rng = np.random.default_rng(1)
  signal = rng.standard_normal((200, 4))
  x = (offset + signal).astype(dtype)
  y = (offset + 0.3 + signal + 0.8 * rng.standard_normal((200, 4))).astype(dtype)
  expected = _scipy_r(x, y)
  assert np.all(np.isfinite(expected))
  np.testing.assert_allclose(pearson_r(x, y), expected, atol=ATOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_zero_variance_column_is_nan(dtype):
  rng = np.random.default_rng(2)
  x = rng.standard_normal((30, 3)).astype(dtype)
  y = rng.standard_normal((30, 3)).astype(dtype)
  x[:, 1] = 4.0  # dead unit
  y[:, 2] = -2.5  # constant neuroid
  r = np.asarray(pearson_r(x, y))
  assert np.isnan(r[1]) and np.isnan(r[2])
  np.testing.assert_allclose(r[0], _scipy_r(x[:, :1], y[:, :1])[0], atol=ATOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_mask_uses_pairwise_complete_rows(dtype):
  rng = np.random.default_rng(3)
  x = (100 + rng.standard_normal((50, 5))).astype(dtype)
  y = (x + rng.standard_normal((50, 5))).astype(dtype)
  mask = rng.random((50, 5)) > 0.3
  x_holes = np.where(mask, x, np.nan)  # masked cells may hold NaN
  expected = [
    scipy.stats.pearsonr(
      x[mask[:, j], j].astype(np.float64), y[mask[:, j], j].astype(np.float64)
    )[0]
    for j in range(5)
  ]
  r = pearson_r(x_holes, y, mask=mask)
  np.testing.assert_allclose(r, expected, atol=ATOL[dtype])
  # A row mask (n,) applies to every column.
  rows = mask[:, 0]
  np.testing.assert_allclose(
    pearson_r(x, y, mask=rows), _scipy_r(x[rows], y[rows]), atol=ATOL[dtype]
  )


def test_mask_with_fewer_than_two_rows_is_nan():
  x = np.arange(12.0).reshape(6, 2)
  mask = np.zeros((6, 2), bool)
  mask[0, 0] = True
  assert np.all(np.isnan(pearson_r(x, x**2, mask=mask)))


def test_traces_once_per_shape():
  traces = 0

  def f(x, y):
    nonlocal traces
    traces += 1
    return pearson_r(x, y)

  jitted = jax.jit(f)
  rng = np.random.default_rng(4)
  for _ in range(3):
    jitted(rng.standard_normal((20, 3)), rng.standard_normal((20, 3)))
  assert traces == 1


def test_bad_shapes_raise():
  with pytest.raises(ValueError, match="x must be a 2-D array"):
    pearson_r(jnp.zeros(5), jnp.zeros(5))
  with pytest.raises(ValueError, match="same shape as x"):
    pearson_r(jnp.zeros((5, 2)), jnp.zeros((5, 3)))
  with pytest.raises(ValueError, match="mask must have shape"):
    pearson_r(jnp.zeros((5, 2)), jnp.zeros((5, 2)), mask=jnp.ones(4, bool))
