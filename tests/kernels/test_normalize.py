"""Ceiling normalisations and their lookup table."""

import numpy as np
import pytest

from jaxscore.kernels import (
  NORMALIZATIONS,
  explained_variance,
  get_normalization,
  squared_ratio,
)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_values(dtype):
  raw = np.array([0.6, -0.3, 0.0], dtype)
  ceiling = np.array([0.8, 0.9, 0.5], dtype)
  ev = explained_variance(raw, ceiling)
  sr = squared_ratio(raw, ceiling)
  assert ev.dtype == dtype and sr.dtype == dtype
  rtol = 1e-6 if dtype == np.float32 else 1e-14
  np.testing.assert_allclose(ev, raw.astype(float) ** 2 / ceiling, rtol=rtol)
  np.testing.assert_allclose(sr, (raw.astype(float) / ceiling) ** 2, rtol=rtol)
  # r^2 / c <= (r / c)^2 whenever 0 < c <= 1.
  assert np.all(np.asarray(ev) <= np.asarray(sr) + 1e-7)


def test_broadcasts_a_scalar_ceiling():
  raw = np.array([0.5, 0.4])
  np.testing.assert_allclose(explained_variance(raw, 0.8), raw**2 / 0.8)


def test_table_and_lookup():
  assert NORMALIZATIONS["r2_over_c"] is explained_variance
  assert NORMALIZATIONS["squared_ratio"] is squared_ratio
  assert get_normalization("r2_over_c") is explained_variance
  with pytest.raises(ValueError, match=r"'r2_over_c', 'squared_ratio'.*'r_over_c'"):
    get_normalization("r_over_c")
  with pytest.raises(ValueError, match="must be one of"):
    get_normalization(None)
