"""RDMs, rank correlations and linear CKA against SciPy and NumPy references."""

import jax
import numpy as np
import pytest
import scipy.spatial.distance
import scipy.stats

from jaxscore import kernels
from jaxscore.kernels import rsa as rsa_lib

DTYPES = [np.float32, np.float64]
ATOL = {np.float32: 2e-5, np.float64: 1e-12}


def _squareform_pdist(x, metric):
  x = np.asarray(x, np.float64)
  return scipy.spatial.distance.squareform(scipy.spatial.distance.pdist(x, metric))


def _tau_a(x, y):
  """Kendall's tau-a by a double loop over pairs (SciPy only has tau-b/c)."""
  n = len(x)
  total = 0
  for i in range(n):
    for j in range(i + 1, n):
      total += np.sign(x[i] - x[j]) * np.sign(y[i] - y[j])
  return total / (n * (n - 1) / 2)


def _hsic_biased(K, L):
  n = len(K)
  H = np.eye(n) - np.ones((n, n)) / n
  return np.trace(K @ H @ L @ H) / (n - 1) ** 2


def _hsic_unbiased(K, L):
  """Song et al. (2012), eq. 5, literally."""
  n = len(K)
  K, L = K.copy(), L.copy()
  np.fill_diagonal(K, 0)
  np.fill_diagonal(L, 0)
  ones = np.ones(n)
  return (
    np.trace(K @ L)
    + (ones @ K @ ones) * (ones @ L @ ones) / ((n - 1) * (n - 2))
    - 2 / (n - 2) * (ones @ K @ L @ ones)
  ) / (n * (n - 3))


def _cka_reference(X, Y, hsic):
  X, Y = np.asarray(X, np.float64), np.asarray(Y, np.float64)
  K, L = X @ X.T, Y @ Y.T
  return hsic(K, L) / np.sqrt(hsic(K, K) * hsic(L, L))


def _related(rng, n, p, q):
  X = rng.standard_normal((n, p))
  Y = X @ rng.standard_normal((p, q)) + 2.0 * rng.standard_normal((n, q))
  return X, Y


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("metric", ["correlation", "euclidean"])
def test_rdm_matches_scipy(dtype, metric):
  rng = np.random.default_rng(0)
  features = rng.standard_normal((25, 40)).astype(dtype)
  result = kernels.rdm(features, metric=metric)
  assert result.shape == (25, 25)
  assert result.dtype == dtype
  expected = _squareform_pdist(features, metric)
  np.testing.assert_allclose(result, expected, atol=ATOL[dtype] * 10)
  np.testing.assert_array_equal(np.diag(result), 0)
  np.testing.assert_array_equal(result, np.asarray(result).T)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("metric", ["correlation", "euclidean"])
@pytest.mark.parametrize("offset", [1e3, 1e5, 1e6])
def test_rdm_stays_accurate_on_large_offsets(dtype, metric, offset):
  # Activations that sit far from zero: the reference sees the same rounded data.
  rng = np.random.default_rng(1)
  features = (offset + rng.standard_normal((20, 30))).astype(dtype)
  expected = _squareform_pdist(features, metric)
  scale = expected.max()
  np.testing.assert_allclose(
    kernels.rdm(features, metric=metric) / scale, expected / scale, atol=1e-4
  )


def test_rdm_of_constant_pattern_is_nan_off_the_diagonal():
  rng = np.random.default_rng(2)
  features = rng.standard_normal((5, 8))
  features[3] = 7.0
  result = np.asarray(kernels.rdm(features))
  assert np.isnan(result[3, [0, 1, 2, 4]]).all()
  assert result[3, 3] == 0
  assert np.isfinite(np.delete(np.delete(result, 3, 0), 3, 1)).all()


def test_rdm_rejects_bad_input():
  with pytest.raises(ValueError, match="metric must be one of"):
    kernels.rdm(np.ones((3, 2)), metric="cosine")
  with pytest.raises(ValueError, match="2-D array"):
    kernels.rdm(np.ones(3))
  with pytest.raises(ValueError, match="at least 2 stimuli"):
    kernels.rdm(np.ones((1, 4)))


def test_upper_triangle_is_squareform_order():
  rng = np.random.default_rng(3)
  matrix = _squareform_pdist(rng.standard_normal((7, 3)), "euclidean")
  np.testing.assert_array_equal(
    kernels.upper_triangle(matrix), scipy.spatial.distance.squareform(matrix)
  )
  with pytest.raises(ValueError, match="square"):
    kernels.upper_triangle(np.ones((3, 4)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_spearman_matches_scipy_with_ties(dtype):
  rng = np.random.default_rng(4)
  x = rng.integers(0, 6, 200).astype(dtype)  # many ties
  y = (x + rng.integers(0, 4, 200)).astype(dtype)
  r = kernels.spearman_r(x, y)
  assert r.dtype == dtype
  np.testing.assert_allclose(r, scipy.stats.spearmanr(x, y)[0], atol=ATOL[dtype])
  z = rng.standard_normal(200).astype(dtype)  # no ties
  np.testing.assert_allclose(
    kernels.spearman_r(z, y), scipy.stats.spearmanr(z, y)[0], atol=ATOL[dtype]
  )


def test_spearman_is_nan_for_constant_or_nan_input():
  x = np.arange(10.0)
  assert np.isnan(kernels.spearman_r(x, np.ones(10)))
  y = x.copy()
  y[4] = np.nan
  assert np.isnan(kernels.spearman_r(x, y))


@pytest.mark.parametrize("dtype", DTYPES)
def test_kendall_tau_a_matches_double_loop(dtype):
  rng = np.random.default_rng(5)
  x = rng.integers(0, 5, 60).astype(dtype)
  y = (x + rng.integers(0, 3, 60)).astype(dtype)
  tau = kernels.kendall_tau_a(x, y)
  assert tau.dtype == dtype
  np.testing.assert_allclose(tau, _tau_a(x, y), atol=ATOL[dtype])
  # With ties, tau-a is smaller in magnitude than SciPy's tau-b ...
  assert abs(float(tau)) < abs(scipy.stats.kendalltau(x, y)[0])
  # ... and without ties the two agree.
  z, w = rng.standard_normal(60), rng.standard_normal(60)
  np.testing.assert_allclose(
    kernels.kendall_tau_a(z, w), scipy.stats.kendalltau(z, w)[0], atol=1e-12
  )


def test_vector_shape_errors():
  with pytest.raises(ValueError, match="1-D"):
    kernels.spearman_r(np.ones((3, 2)), np.ones((3, 2)))
  with pytest.raises(ValueError, match="shape of x"):
    kernels.kendall_tau_a(np.ones(4), np.ones(5))


@pytest.mark.parametrize("dtype", DTYPES)
def test_rsa_methods_match_references(dtype):
  rng = np.random.default_rng(6)
  X, Y = _related(rng, 15, 6, 9)
  a = _squareform_pdist(X, "correlation").astype(dtype)
  b = _squareform_pdist(Y, "correlation").astype(dtype)
  ua, ub = scipy.spatial.distance.squareform(a), scipy.spatial.distance.squareform(b)
  expected = {
    "spearman": scipy.stats.spearmanr(ua, ub)[0],
    "kendall_tau_a": _tau_a(ua, ub),
    "pearson": scipy.stats.pearsonr(ua.astype(np.float64), ub)[0],
  }
  for method, value in expected.items():
    result = rsa_lib.rsa(a, b, method=method)
    assert result.dtype == dtype
    np.testing.assert_allclose(result, value, atol=ATOL[dtype], err_msg=method)
  np.testing.assert_allclose(rsa_lib.rsa(a, a), 1, atol=ATOL[dtype])


def test_rsa_rejects_bad_input():
  a = np.zeros((4, 4))
  with pytest.raises(ValueError, match="method must be one of"):
    rsa_lib.rsa(a, a, method="kendall")
  with pytest.raises(ValueError, match="same stimuli"):
    rsa_lib.rsa(a, np.zeros((5, 5)))
  with pytest.raises(ValueError, match="square"):
    rsa_lib.rsa(np.zeros((4, 3)), np.zeros((4, 3)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(40, 5, 7), (12, 30, 20)])  # feature / Gram path
def test_biased_cka_matches_hsic_reference(dtype, shape):
  rng = np.random.default_rng(7)
  X, Y = _related(rng, *shape)
  X = (X + 3.0).astype(dtype)  # an offset: centring is the kernel's job
  Y = Y.astype(dtype)
  expected = _cka_reference(
    X - X.mean(0, dtype=np.float64), Y - Y.mean(0, dtype=np.float64), _hsic_biased
  )
  cka = kernels.linear_cka(X, Y)
  assert cka.dtype == dtype
  np.testing.assert_allclose(cka, expected, atol=ATOL[dtype] * 5)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(40, 5, 7), (12, 30, 20), (4, 3, 2)])
def test_unbiased_cka_matches_song_estimator(dtype, shape):
  rng = np.random.default_rng(8)
  X, Y = _related(rng, *shape)
  X, Y = X.astype(dtype), (Y - 2.0).astype(dtype)
  # The reference uses uncentred features: the estimator is translation-free.
  expected = _cka_reference(X, Y, _hsic_unbiased)
  cka = kernels.linear_cka(X, Y, unbiased=True)
  assert cka.dtype == dtype
  np.testing.assert_allclose(cka, expected, atol=ATOL[dtype] * 5)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("unbiased", [False, True])
def test_cka_invariances(dtype, unbiased):
  rng = np.random.default_rng(9)
  X, Y = _related(rng, 30, 8, 6)
  X, Y = X.astype(dtype), Y.astype(dtype)
  base = kernels.linear_cka(X, Y, unbiased=unbiased)
  np.testing.assert_allclose(kernels.linear_cka(X, X, unbiased=unbiased), 1, atol=1e-6)
  Q, _ = np.linalg.qr(rng.standard_normal((8, 8)))
  for transformed in (X @ Q.astype(dtype), 250.0 * X, X + 1e3):
    np.testing.assert_allclose(
      kernels.linear_cka(transformed.astype(dtype), Y, unbiased=unbiased),
      base,
      atol=1e-4 if dtype == np.float32 else 1e-10,
    )


def test_unbiased_cka_refuses_fewer_than_4_stimuli():
  X = np.ones((3, 2))
  with pytest.raises(ValueError, match="at least 4 stimuli"):
    kernels.linear_cka(X, X, unbiased=True)
  with pytest.raises(ValueError, match="at least 4 stimuli"):
    kernels.gram_cka(X @ X.T, X @ X.T, unbiased=True)
  assert np.isfinite(kernels.linear_cka(np.arange(6.0).reshape(3, 2), X + np.eye(3, 2)))


def test_cka_errors_and_dead_layers():
  with pytest.raises(ValueError, match="one row per stimulus"):
    kernels.linear_cka(np.ones((5, 2)), np.ones((6, 2)))
  with pytest.raises(ValueError, match="2-D array"):
    kernels.linear_cka(np.ones(5), np.ones((5, 2)))
  rng = np.random.default_rng(10)
  assert np.isnan(kernels.linear_cka(np.ones((6, 3)), rng.standard_normal((6, 2))))


@pytest.mark.parametrize("unbiased", [False, True])
def test_cka_from_rdms_is_cka_of_the_implied_features(unbiased):
  rng = np.random.default_rng(11)
  X, Y = _related(rng, 20, 7, 5)
  # Euclidean RDMs: classical scaling recovers plain linear CKA.
  K = kernels.gram_from_rdm(kernels.rdm(X, metric="euclidean"), metric="euclidean")
  L = kernels.gram_from_rdm(kernels.rdm(Y, metric="euclidean"), metric="euclidean")
  np.testing.assert_allclose(
    kernels.gram_cka(K, L, unbiased=unbiased),
    kernels.linear_cka(X, Y, unbiased=unbiased),
    atol=1e-10,
  )

  # Correlation RDMs: CKA of patterns centred and normalised per stimulus.
  def standardise(Z):
    Z = Z - Z.mean(1, keepdims=True)
    return Z / np.linalg.norm(Z, axis=1, keepdims=True)

  K = kernels.gram_from_rdm(kernels.rdm(X))
  L = kernels.gram_from_rdm(kernels.rdm(Y))
  np.testing.assert_allclose(
    kernels.gram_cka(K, L, unbiased=unbiased),
    kernels.linear_cka(standardise(X), standardise(Y), unbiased=unbiased),
    atol=1e-10,
  )


def test_kernels_compile_once_per_shape():
  rng = np.random.default_rng(12)
  before = rsa_lib.rsa._cache_size()
  for _ in range(3):
    a = _squareform_pdist(rng.standard_normal((13, 4)), "correlation")
    b = _squareform_pdist(rng.standard_normal((13, 4)), "correlation")
    rsa_lib.rsa(a, b)
  assert rsa_lib.rsa._cache_size() == before + 1
  before = kernels.linear_cka._cache_size()
  for _ in range(3):
    kernels.linear_cka(rng.standard_normal((13, 3)), rng.standard_normal((13, 5)))
  assert kernels.linear_cka._cache_size() == before + 1


def test_kernels_run_under_vmap():
  rng = np.random.default_rng(13)
  features = rng.standard_normal((4, 10, 6))  # 4 layers' worth of features
  rdms = jax.vmap(kernels.rdm)(features)
  scores = jax.vmap(lambda a: rsa_lib.rsa(a, rdms[0]))(rdms)
  assert scores.shape == (4,)
  np.testing.assert_allclose(scores[0], 1, atol=1e-12)
