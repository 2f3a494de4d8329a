"""Kernel (Gram) forms of PLS and ridge against the primal forms and sklearn."""

import warnings

import jax
import numpy as np
import pytest
from sklearn.cross_decomposition import PLSRegression
from sklearn.linear_model import RidgeCV

from jaxscore.kernels import (
  center_gram,
  pls_fit_predict,
  pls_fit_predict_gram,
  ridge_fit_predict,
  ridge_fit_predict_gram,
)

DTYPES = [np.float32, np.float64]
RTOL = {np.float32: 5e-4, np.float64: 1e-9}
ALPHAS = np.logspace(-1, 4, 11)


def _split_data(dtype, *, n=90, n_features=400, n_neuroids=6, seed=0):
  """Wide features with a large offset, as ReLU activations have."""
  rng = np.random.default_rng(seed)
  X = rng.standard_normal((n, n_features)) * np.arange(1, n_features + 1) ** -0.5
  X += 50.0
  Y = X[:, :8] @ rng.standard_normal((8, n_neuroids)) + rng.standard_normal(
    (n, n_neuroids)
  )
  order = rng.permutation(n)
  train, test = np.sort(order[:75]), np.sort(order[75:])
  centred = X - X.mean(0)
  gram = (centred @ centred.T).astype(dtype)
  K_train, K_test = center_gram(gram, train, test)
  X, Y = X.astype(dtype), Y.astype(dtype)
  return X, Y, train, test, K_train, K_test


def _atol(Y, dtype):
  return RTOL[dtype] * np.std(Y)


@pytest.mark.parametrize("dtype", DTYPES)
def test_center_gram_equals_kernel_of_train_centred_features(dtype):
  X, _, train, test, K_train, K_test = _split_data(dtype)
  X = X.astype(np.float64)
  mean = X[train].mean(0)
  np.testing.assert_allclose(
    K_train, (X[train] - mean) @ (X[train] - mean).T, rtol=0, atol=1e-3
  )
  np.testing.assert_allclose(
    K_test, (X[test] - mean) @ (X[train] - mean).T, rtol=0, atol=1e-3
  )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_components", [1, 5, 25])
def test_pls_gram_matches_primal_and_sklearn(dtype, n_components):
  X, Y, train, test, K_train, K_test = _split_data(dtype)
  gram = pls_fit_predict_gram(
    K_train, K_test, Y[train], n_components=n_components, n_features=X.shape[1]
  )
  primal = pls_fit_predict(X[train], Y[train], X[test], n_components=n_components)
  np.testing.assert_allclose(gram, primal, rtol=0, atol=_atol(Y, dtype))
  model = PLSRegression(n_components, scale=False, tol=1e-30, max_iter=3000)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    model.fit(X[train].astype(float), Y[train].astype(float))
  expected = model.predict(X[test].astype(float))
  np.testing.assert_allclose(gram, expected, rtol=0, atol=_atol(Y, dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_pls_gram_with_exhausted_rank_stays_finite(dtype):
  X, Y, train, test, K_train, K_test = _split_data(dtype, n_features=30)
  # 30 features, 60 components allowed by n_features=400: rank runs out at 30
  gram = pls_fit_predict_gram(
    K_train, K_test, Y[train], n_components=60, n_features=400
  )
  primal = pls_fit_predict(X[train], Y[train], X[test], n_components=30)
  assert np.isfinite(gram).all()
  np.testing.assert_allclose(gram, primal, rtol=0, atol=10 * _atol(Y, dtype))


def test_pls_gram_refuses_more_components_than_features():
  _, Y, train, _, K_train, K_test = _split_data(np.float64)
  with pytest.raises(ValueError, match="exceeds the number of features"):
    pls_fit_predict_gram(K_train, K_test, Y[train], n_components=25, n_features=10)


@pytest.mark.parametrize("dtype", DTYPES)
def test_ridge_gram_matches_primal_and_ridgecv(dtype):
  X, Y, train, test, K_train, K_test = _split_data(dtype)
  gram = ridge_fit_predict_gram(K_train, K_test, Y[train], ALPHAS)
  direct = ridge_fit_predict(X[train], Y[train], X[test], ALPHAS)
  np.testing.assert_allclose(
    gram.predictions, direct.predictions, rtol=0, atol=5 * _atol(Y, dtype)
  )
  if dtype == np.float64:
    model = RidgeCV(alphas=ALPHAS, alpha_per_target=True).fit(X[train], Y[train])
    np.testing.assert_allclose(gram.alpha, model.alpha_)
    np.testing.assert_allclose(
      gram.predictions, model.predict(X[test]), rtol=0, atol=_atol(Y, dtype)
    )


def test_gram_kernels_vmap_over_splits_and_trace_once():
  X, Y, train, test, _, _ = _split_data(np.float32)
  centred = X - X.mean(0)
  gram = centred @ centred.T
  Y = jax.numpy.asarray(Y)
  traces = []

  def one_split(tr, te):
    traces.append(1)
    K_train, K_test = center_gram(gram, tr, te)
    return pls_fit_predict_gram(K_train, K_test, Y[tr], n_components=5, n_features=400)

  run = jax.jit(jax.vmap(one_split))
  trains = np.stack([np.roll(train, k) for k in range(3)])
  tests = np.stack([test] * 3)
  first = run(trains, tests)
  run(trains, tests)
  assert len(traces) == 1
  single = pls_fit_predict_gram(
    *center_gram(gram, train, test), Y[train], n_components=5, n_features=400
  )
  np.testing.assert_allclose(first[0], single, rtol=1e-5, atol=1e-5)
