"""Ridge (exact-LOO alpha per neuroid) and exact PLS2 against scikit-learn."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.cross_decomposition import PLSRegression
from sklearn.linear_model import Ridge, RidgeCV

from jaxscore.kernels import (
  pls_fit_predict,
  ridge_fit_predict,
  ridge_path_predict,
)

DTYPES = [np.float32, np.float64]
# Prediction tolerance relative to the spread of the responses.
RTOL = {np.float32: 2e-4, np.float64: 1e-9}
ALPHAS = np.logspace(-1, 4, 11)


def _data(n_train, n_test, n_features, n_neuroids, *, seed=0, offset=3.0):
  """Features with a decaying spectrum; neuroids read a few latent directions."""
  rng = np.random.default_rng(seed)
  n = n_train + n_test
  X = rng.standard_normal((n, n_features)) * np.arange(1, n_features + 1) ** -0.5
  X += offset
  W = rng.standard_normal((n_features, n_neuroids)) * rng.uniform(0.2, 2, n_neuroids)
  Y = X @ W + rng.standard_normal((n, n_neuroids)) + 10
  return X[:n_train], Y[:n_train], X[n_train:]


def _cast(dtype, *arrays):
  return [np.asarray(a, dtype) for a in arrays]


def _sklearn_pls(X_train, Y_train, X_test, n_components):
  model = PLSRegression(n_components, scale=False, tol=1e-30, max_iter=3000)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # "maximum number of iterations reached"
    model.fit(np.asarray(X_train, float), np.asarray(Y_train, float))
  return model.predict(np.asarray(X_test, float))


def _close(actual, expected, Y_train, dtype):
  assert np.all(np.isfinite(actual))
  atol = RTOL[dtype] * np.std(Y_train)
  np.testing.assert_allclose(actual, expected, rtol=0, atol=atol)


def _equations(fn, args):
  """Every equation of fn's jaxpr, sub-jaxprs (jit, loops) included."""
  found = []

  def visit(jaxpr):
    for eqn in jaxpr.eqns:
      found.append(eqn)
      for param in eqn.params.values():
        inner = getattr(param, "jaxpr", param)
        if hasattr(inner, "eqns"):
          visit(inner)

  visit(jax.make_jaxpr(fn)(*args).jaxpr)
  return found


def _intermediate_shapes(fn, args):
  return {tuple(v.aval.shape) for e in _equations(fn, args) for v in e.outvars}


# ---------------------------------------------------------------- ridge


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
  ("n_train", "n_features"), [(60, 12), (30, 80)], ids=["primal", "dual"]
)
def test_ridge_matches_ridgecv(dtype, n_train, n_features):
  X_train, Y_train, X_test = _data(n_train, 15, n_features, 8, seed=n_features)
  reference = RidgeCV(alphas=ALPHAS, alpha_per_target=True, store_cv_results=True)
  reference.fit(X_train, Y_train)
  result = ridge_fit_predict(*_cast(dtype, X_train, Y_train, X_test), ALPHAS)
  assert result.predictions.shape == (15, 8) and result.alpha.shape == (8,)
  assert result.predictions.dtype == dtype and result.alpha.dtype == dtype
  # The chosen alpha is sklearn's, or (in float32) one whose LOO error sklearn
  # rates within float32 resolution of its own choice.
  loo = reference.cv_results_.mean(axis=0)  # (n_neuroids, n_alphas)
  ours = np.searchsorted(ALPHAS, np.asarray(result.alpha, float) * (1 - 1e-6))
  theirs = np.searchsorted(ALPHAS, reference.alpha_)
  best = loo[np.arange(8), theirs]
  if dtype == np.float64:
    np.testing.assert_array_equal(ours, theirs)
  np.testing.assert_allclose(loo[np.arange(8), ours], best, rtol=1e-5)
  assert np.mean(ours == theirs) >= 0.75
  expected = RidgeCV(alphas=ALPHAS, alpha_per_target=True).fit(X_train, Y_train)
  keep = ours == theirs
  _close(
    np.asarray(result.predictions)[:, keep],
    expected.predict(X_test)[:, keep],
    Y_train,
    dtype,
  )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
  ("n_train", "n_features"), [(50, 10), (20, 60)], ids=["primal", "dual"]
)
def test_ridge_path_matches_ridge(dtype, n_train, n_features):
  X_train, Y_train, X_test = _data(n_train, 7, n_features, 4, seed=1)
  alphas = np.array([0.3, 3.0, 300.0])
  path = ridge_path_predict(*_cast(dtype, X_train, Y_train, X_test), alphas)
  assert path.shape == (3, 7, 4) and path.dtype == dtype
  for i, alpha in enumerate(alphas):
    expected = Ridge(alpha=alpha).fit(X_train, Y_train).predict(X_test)
    _close(path[i], expected, Y_train, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_ridge_degenerate_features_and_one_neuroid(dtype):
  # Constant and duplicated feature columns, a single neuroid.
  X_train, Y_train, X_test = _data(40, 10, 6, 1, seed=2)
  X_train = np.concatenate([X_train, X_train[:, :2], np.full((40, 1), 5.0)], 1)
  X_test = np.concatenate([X_test, X_test[:, :2], np.full((10, 1), 5.0)], 1)
  result = ridge_fit_predict(*_cast(dtype, X_train, Y_train, X_test), ALPHAS)
  reference = RidgeCV(alphas=ALPHAS, alpha_per_target=True).fit(X_train, Y_train)
  assert result.predictions.shape == (10, 1)
  np.testing.assert_allclose(result.alpha, np.atleast_1d(reference.alpha_), rtol=1e-6)
  expected = reference.predict(X_test).reshape(10, 1)
  _close(result.predictions, expected, Y_train, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_ridge_dual_with_repeated_stimuli(dtype):
  # Repeated rows with different responses leave null directions in the
  # stimulus Gram besides the constant one.
  X_train, Y_train, X_test = _data(24, 6, 50, 3, seed=12)
  noise = np.random.default_rng(0).standard_normal((6, 3))
  X_train = np.concatenate([X_train, X_train[:6]])
  Y_train = np.concatenate([Y_train, Y_train[:6] + noise])
  result = ridge_fit_predict(*_cast(dtype, X_train, Y_train, X_test), ALPHAS)
  reference = RidgeCV(alphas=ALPHAS, alpha_per_target=True).fit(X_train, Y_train)
  np.testing.assert_allclose(result.alpha, reference.alpha_, rtol=1e-6)
  _close(result.predictions, reference.predict(X_test), Y_train, dtype)


def test_ridge_vmaps_over_splits_and_traces_once():
  X, Y, _ = _data(80, 0, 10, 5, seed=3)
  rng = np.random.default_rng(0)
  train = np.stack([np.sort(rng.permutation(80)[:60]) for _ in range(4)])
  test = np.stack([np.setdiff1d(np.arange(80), t) for t in train])
  traces = 0

  def score(X, Y, train, test, alphas):
    nonlocal traces
    traces += 1

    def one(tr, te):
      return ridge_fit_predict(X[tr], Y[tr], X[te], alphas)

    return jax.vmap(one)(train, test)

  jitted = jax.jit(score)
  result = jitted(X, Y, train, test, ALPHAS)
  jitted(X + 1, Y, train, test, ALPHAS)
  assert traces == 1
  assert result.predictions.shape == (4, 20, 5)
  for s in range(4):
    single = ridge_fit_predict(X[train[s]], Y[train[s]], X[test[s]], ALPHAS)
    np.testing.assert_allclose(result.predictions[s], single.predictions, rtol=1e-10)
    np.testing.assert_array_equal(result.alpha[s], single.alpha)


def test_ridge_dual_never_forms_a_feature_gram():
  X_train, Y_train, X_test = _data(30, 5, 20_000, 3, seed=4)
  args = [*_cast(np.float32, X_train, Y_train, X_test), ALPHAS]
  shapes = _intermediate_shapes(ridge_fit_predict, args)
  assert (30, 30) in shapes  # the stimulus Gram is there ...
  assert (20_000, 20_000) not in shapes  # ... the feature Gram is not
  result = jax.jit(ridge_fit_predict)(*args)
  assert np.all(np.isfinite(result.predictions))


def test_matmuls_run_at_highest_precision():
  # GPUs would otherwise use TF32 for float32 Gram matrices (pitfalls.md).
  X_train, Y_train, X_test = _cast(np.float32, *_data(20, 4, 6, 3, seed=11))

  def pls(*args):
    return pls_fit_predict(*args, n_components=3)

  for fn, args in [
    (ridge_fit_predict, (X_train, Y_train, X_test, ALPHAS)),
    (ridge_path_predict, (X_train, Y_train, X_test, ALPHAS)),
    (pls, (X_train, Y_train, X_test)),
  ]:
    dots = [e for e in _equations(fn, args) if e.primitive.name == "dot_general"]
    assert dots
    for eqn in dots:
      assert eqn.params["precision"] == (
        jax.lax.Precision.HIGHEST,
        jax.lax.Precision.HIGHEST,
      )


def test_ridge_rejects_bad_shapes():
  X, Y = np.zeros((10, 3)), np.zeros((10, 2))
  with pytest.raises(ValueError, match="Y_train must have one row per training"):
    ridge_fit_predict(X, Y[:9], X, ALPHAS)
  with pytest.raises(ValueError, match="X_test must have the 3 features"):
    ridge_fit_predict(X, Y, np.zeros((4, 2)), ALPHAS)
  with pytest.raises(ValueError, match="Y_train must be a 2-D array"):
    ridge_fit_predict(X, Y[:, 0], X, ALPHAS)
  with pytest.raises(ValueError, match="alphas must be a non-empty 1-D array"):
    ridge_fit_predict(X, Y, X, 1.0)


# ---------------------------------------------------------------- PLS


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
  ("n_train", "n_features", "n_neuroids", "n_components"),
  [(60, 20, 7, 5), (60, 20, 7, 19), (40, 100, 6, 10), (50, 4, 9, 3), (50, 15, 1, 6)],
  ids=["few", "many", "wide", "more-neuroids-than-features", "one-neuroid"],
)
def test_pls_matches_sklearn(dtype, n_train, n_features, n_neuroids, n_components):
  X_train, Y_train, X_test = _data(n_train, 12, n_features, n_neuroids, seed=5)
  predictions = pls_fit_predict(
    *_cast(dtype, X_train, Y_train, X_test), n_components=n_components
  )
  assert predictions.shape == (12, n_neuroids) and predictions.dtype == dtype
  expected = _sklearn_pls(X_train, Y_train, X_test, n_components)
  _close(predictions, expected, Y_train, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_pls_constant_and_duplicated_columns_add_nothing(dtype):
  # Rank 8 after centring; 11 components requested. sklearn blows up on this
  # input (it divides by ~0 scores), so the reference is sklearn on the 8
  # informative columns with 8 components: the extra components must vanish.
  X_train, Y_train, X_test = _data(50, 10, 8, 4, seed=6)

  def extra(X):  # 3 duplicated and 2 constant columns
    return np.concatenate([X, X[:, :3], np.full((len(X), 2), 7.0)], 1)

  predictions = pls_fit_predict(
    *_cast(dtype, extra(X_train), Y_train, extra(X_test)), n_components=11
  )
  expected = _sklearn_pls(X_train, Y_train, X_test, 8)
  _close(predictions, expected, Y_train, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_pls_exhausted_rank_equals_fewer_components(dtype):
  rng = np.random.default_rng(7)
  latent = rng.standard_normal((60, 3))
  X = latent @ rng.standard_normal((3, 12)) + 2  # rank 3
  Y = latent @ rng.standard_normal((3, 4)) + rng.standard_normal((60, 4))
  predictions = pls_fit_predict(*_cast(dtype, X[:50], Y[:50], X[50:]), n_components=8)
  expected = _sklearn_pls(X[:50], Y[:50], X[50:], 3)
  _close(predictions, expected, Y[:50], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_pls_constant_neuroid_and_constant_features(dtype):
  X_train, Y_train, X_test = _data(30, 6, 5, 3, seed=8)
  Y_train[:, 1] = 4.0
  predictions = np.asarray(
    pls_fit_predict(*_cast(dtype, X_train, Y_train, X_test), n_components=3)
  )
  np.testing.assert_allclose(predictions[:, 1], 4.0, rtol=1e-6)
  # All features constant: nothing to learn, predict the training mean.
  flat = pls_fit_predict(
    *_cast(dtype, np.ones((30, 5)), Y_train, np.ones((6, 5))), n_components=3
  )
  np.testing.assert_allclose(flat, np.broadcast_to(Y_train.mean(0), (6, 3)), rtol=1e-5)


def test_pls_wide_features_without_a_feature_gram():
  X_train, Y_train, X_test = _data(40, 8, 20_000, 5, seed=9, offset=0.0)
  args = _cast(np.float32, X_train, Y_train, X_test)

  def fit(X_train, Y_train, X_test):
    return pls_fit_predict(X_train, Y_train, X_test, n_components=25)

  shapes = _intermediate_shapes(fit, args)
  assert (20_000, 25) in shapes  # rotations and loadings
  assert (20_000, 20_000) not in shapes
  predictions = jax.jit(fit)(*args)
  assert np.all(np.isfinite(predictions))
  # PLS commutes with rotations of the feature space, and its weights lie in
  # the row space of the centred training features; so sklearn on the 40
  # row-space coordinates is an exact, fast reference.
  mean = X_train.mean(0)
  _, _, Vt = np.linalg.svd(X_train - mean, full_matrices=False)  # (40, 20000)
  expected = _sklearn_pls((X_train - mean) @ Vt.T, Y_train, (X_test - mean) @ Vt.T, 25)
  np.testing.assert_allclose(predictions, expected, atol=1e-3 * np.std(Y_train))


def test_pls_vmaps_over_splits_and_traces_once():
  X, Y, _ = _data(70, 0, 12, 4, seed=10)
  rng = np.random.default_rng(1)
  train = np.stack([np.sort(rng.permutation(70)[:60]) for _ in range(3)])
  test = np.stack([np.setdiff1d(np.arange(70), t) for t in train])
  traces = 0

  def predict(X, Y, train, test):
    nonlocal traces
    traces += 1

    def one(tr, te):
      return pls_fit_predict(X[tr], Y[tr], X[te], n_components=6)

    return jax.vmap(one)(train, test)

  jitted = jax.jit(predict)
  predictions = jitted(X, Y, train, test)
  jitted(X, Y + 1, train, test)
  assert traces == 1
  for s in range(3):
    expected = _sklearn_pls(X[train[s]], Y[train[s]], X[test[s]], 6)
    _close(predictions[s], expected, Y, np.float64)


def test_pls_rejects_too_many_components():
  X, Y = jnp.zeros((30, 10)), jnp.zeros((30, 2))
  with pytest.raises(ValueError, match="n_components=25 exceeds the number of "):
    pls_fit_predict(X, Y, X)
  with pytest.raises(ValueError, match=r"n_components=8 exceeds n_train - 1 = 7"):
    pls_fit_predict(X[:8], Y[:8], X, n_components=8)
  with pytest.raises(ValueError, match="n_components must be a positive integer"):
    pls_fit_predict(X, Y, X, n_components=0)
