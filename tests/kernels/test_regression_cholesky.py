"""The Cholesky ridge path against the eigh path and scikit-learn."""

import jax
import numpy as np
import pytest
from sklearn.linear_model import Ridge, RidgeCV

from jaxscore.kernels import regression

ALPHAS = np.logspace(-3, 3, 13)
DTYPES = [np.float32, np.float64]


def _data(n_train=120, n_test=20, n_features=40, n_neuroids=5, seed=0):
  rng = np.random.default_rng(seed)
  n = n_train + n_test
  X = rng.standard_normal((n, n_features)) * np.arange(1, n_features + 1) ** -0.5
  X += 3.0
  Y = X @ rng.standard_normal((n_features, n_neuroids)) + rng.standard_normal(
    (n, n_neuroids)
  )
  return X[:n_train], Y[:n_train], X[n_train:]


def _sklearn_predictions(X_train, Y_train, X_test, alpha):
  return np.stack(
    [
      Ridge(alpha=a).fit(X_train, Y_train[:, k]).predict(X_test)
      for k, a in enumerate(alpha)
    ],
    axis=1,
  )


@pytest.mark.parametrize("dtype", DTYPES)
def test_cholesky_loo_agrees_with_eigh_and_sklearn(dtype):
  X_train, Y_train, X_test = _data()
  args = [np.asarray(a, dtype) for a in (X_train, Y_train, X_test)]
  eigh = regression.ridge_fit_predict(*args, ALPHAS, solver="eigh")
  chol = regression.ridge_fit_predict(*args, ALPHAS, solver="cholesky")
  reference = RidgeCV(alphas=ALPHAS, alpha_per_target=True).fit(X_train, Y_train)
  np.testing.assert_allclose(chol.alpha, reference.alpha_, rtol=1e-6)
  np.testing.assert_array_equal(chol.alpha, eigh.alpha)
  atol = (1e-9 if dtype == np.float64 else 1e-3) * np.std(Y_train)
  expected = _sklearn_predictions(X_train, Y_train, X_test, reference.alpha_)
  np.testing.assert_allclose(chol.predictions, expected, rtol=0, atol=atol)
  np.testing.assert_allclose(chol.predictions, eigh.predictions, rtol=0, atol=atol)
  assert chol.predictions.dtype == dtype


@pytest.mark.parametrize("dtype", DTYPES)
def test_cholesky_gcv_agrees_with_eigh_and_sklearn(dtype):
  X_train, Y_train, X_test = _data(seed=3)
  args = [np.asarray(a, dtype) for a in (X_train, Y_train, X_test)]
  eigh = regression.ridge_gcv_fit_predict(*args, ALPHAS, solver="eigh")
  chol = regression.ridge_gcv_fit_predict(*args, ALPHAS, solver="cholesky")
  np.testing.assert_array_equal(chol.alpha, eigh.alpha)
  atol = (1e-9 if dtype == np.float64 else 1e-3) * np.std(Y_train)
  expected = _sklearn_predictions(X_train, Y_train, X_test, np.asarray(eigh.alpha))
  np.testing.assert_allclose(chol.predictions, expected, rtol=0, atol=atol)
  np.testing.assert_allclose(chol.predictions, eigh.predictions, rtol=0, atol=atol)


def test_wide_layers_fall_back_to_eigh():
  X_train, Y_train, X_test = _data(n_train=30, n_features=40)
  eigh = regression.ridge_fit_predict(X_train, Y_train, X_test, ALPHAS)
  chol = regression.ridge_fit_predict(
    X_train, Y_train, X_test, ALPHAS, solver="cholesky"
  )
  np.testing.assert_array_equal(chol.predictions, eigh.predictions)


def test_auto_picks_by_backend_and_bad_names_are_refused():
  assert regression.resolve_solver("auto", "cpu") == "eigh"
  assert regression.resolve_solver("auto", "gpu") == "cholesky"
  assert regression.resolve_solver("cholesky", "cpu") == "cholesky"
  expected = "eigh" if jax.default_backend() == "cpu" else "cholesky"
  assert regression.resolve_solver("auto") == expected
  with pytest.raises(ValueError, match="solver must be one of eigh, cholesky"):
    regression.resolve_solver("qr")
