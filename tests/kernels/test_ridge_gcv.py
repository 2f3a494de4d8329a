"""Ridge with GCV-chosen penalties against a brute-force GCV and scikit-learn."""

import numpy as np
import pytest
from sklearn.linear_model import Ridge

from jaxscore.kernels import (
  center_gram,
  ridge_gcv_fit_predict,
  ridge_gcv_fit_predict_gram,
)

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


def _brute_force_gcv(X_train, Y_train):
  """n RSS / (n - tr H)^2 with the full hat matrix, intercept included."""
  n, p = X_train.shape
  Xc, Yc = X_train - X_train.mean(0), Y_train - Y_train.mean(0)
  chosen = []
  for k in range(Y_train.shape[1]):
    scores = []
    for alpha in ALPHAS:
      H = Xc @ np.linalg.solve(Xc.T @ Xc + alpha * np.eye(p), Xc.T)
      rss = np.sum((Yc[:, k] - H @ Yc[:, k]) ** 2)
      scores.append(n * rss / (n - 1 - np.trace(H)) ** 2)
    chosen.append(ALPHAS[int(np.argmin(scores))])
  return np.array(chosen)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gcv_chooses_the_brute_force_penalty_and_predicts_like_sklearn(dtype):
  X_train, Y_train, X_test = _data()
  expected_alpha = _brute_force_gcv(X_train, Y_train)
  result = ridge_gcv_fit_predict(
    *(np.asarray(a, dtype) for a in (X_train, Y_train, X_test)), ALPHAS
  )
  np.testing.assert_allclose(result.alpha, expected_alpha, rtol=1e-5)
  expected = np.stack(
    [
      Ridge(alpha=a).fit(X_train, Y_train[:, k]).predict(X_test)
      for k, a in enumerate(expected_alpha)
    ],
    axis=1,
  )
  atol = (1e-9 if dtype == np.float64 else 1e-3) * np.std(Y_train)
  np.testing.assert_allclose(result.predictions, expected, rtol=0, atol=atol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gcv_in_the_dual_matches_the_primal(dtype):
  X_train, Y_train, X_test = _data(n_train=50, n_test=10, n_features=200)
  X = np.concatenate([X_train, X_test])
  centred = X - X.mean(0)
  gram = (centred @ centred.T).astype(dtype)
  K_train, K_test = center_gram(gram, np.arange(50), np.arange(50, 60))
  dual = ridge_gcv_fit_predict_gram(K_train, K_test, Y_train.astype(dtype), ALPHAS)
  primal = ridge_gcv_fit_predict(X_train, Y_train, X_test, ALPHAS)  # float64
  if dtype == np.float64:
    np.testing.assert_allclose(dual.alpha, primal.alpha)
  atol = (1e-8 if dtype == np.float64 else 5e-3) * np.std(Y_train)
  np.testing.assert_allclose(dual.predictions, primal.predictions, rtol=0, atol=atol)
