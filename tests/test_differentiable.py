"""The differentiable ridge score: values against the scorer, gradients against
finite differences."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from sklearn.linear_model import Ridge

from jaxscore import differentiable, kernels, scoring

N_STIMULI, N_FEATURES, N_NEUROIDS = 60, 24, 5
EPS = 1e-5  # central finite-difference step


def _data(dtype, n_features=N_FEATURES, seed=0):
  rng = np.random.default_rng(seed)
  X = rng.normal(size=(N_STIMULI, n_features))
  W = rng.normal(size=(n_features, N_NEUROIDS))
  Y = X @ W + 3 * rng.normal(size=(N_STIMULI, N_NEUROIDS)) + 5
  splits = kernels.shuffle_splits(
    N_STIMULI, n_splits=4, train_size=0.75, key=jax.random.key(1)
  )
  return X.astype(dtype), Y.astype(dtype), splits


def _sklearn_mean_r(X, Y, splits, alpha):
  values = []
  for tr, te in zip(np.asarray(splits.train), np.asarray(splits.test), strict=True):
    pred = Ridge(alpha=alpha).fit(X[tr], Y[tr]).predict(X[te])
    values.append([stats.pearsonr(pred[:, k], Y[te, k])[0] for k in range(Y.shape[1])])
  return np.mean(values)


@pytest.mark.parametrize(
  ("dtype", "rtol"), [(np.float64, 1e-9), (np.float32, 2e-4)], ids=["f64", "f32"]
)
@pytest.mark.parametrize("n_features", [N_FEATURES, 200], ids=["narrow", "wide"])
def test_fixed_alpha_matches_scorer_and_sklearn(dtype, rtol, n_features):
  X, Y, splits = _data(dtype, n_features)
  alpha = 10.0
  value, r = differentiable.ridge_predictivity(
    X, Y, splits.train, splits.test, alphas=alpha, return_r=True
  )
  assert value.dtype == dtype
  fitted = scoring.cross_validated_r(
    X, Y, splits, scoring.Regression(kind="ridge", alphas=(alpha,)), dtype=dtype
  )
  np.testing.assert_allclose(r, fitted.r, rtol=rtol, atol=rtol)
  np.testing.assert_allclose(value, fitted.r.mean(), rtol=rtol)
  np.testing.assert_allclose(value, _sklearn_mean_r(X, Y, splits, alpha), rtol=rtol)


def test_cold_softmin_matches_the_loo_choice_of_the_kernel():
  X, Y, splits = _data(np.float64)
  alphas = np.logspace(-1, 4, 8)
  _, r = differentiable.ridge_predictivity(
    X, Y, splits.train, splits.test, alphas=alphas, temperature=1e-6, return_r=True
  )
  fitted = scoring.cross_validated_r(
    X,
    Y,
    splits,
    scoring.Regression(kind="ridge", alphas=tuple(alphas)),
    dtype=np.float64,
  )
  np.testing.assert_allclose(r, fitted.r, rtol=1e-8, atol=1e-10)
  # and a warm softmin differs, lying between the grid's extremes
  warm = differentiable.ridge_predictivity(
    X, Y, splits.train, splits.test, alphas=alphas, temperature=1.0
  )
  assert abs(float(warm) - fitted.r.mean()) > 1e-6


def _model_score(params, images, Y, splits, alphas, relative):
  features = jnp.tanh(images @ params["w1"]) @ params["w2"]  # (n_stimuli, 12)
  return differentiable.ridge_predictivity(
    features,
    Y,
    splits.train,
    splits.test,
    alphas=alphas,
    temperature=0.5,
    relative_alphas=relative,
  )


@pytest.mark.parametrize(
  ("alphas", "relative"),
  [((3.0,), False), ((0.3, 3.0, 30.0, 300.0), False), ((0.01, 0.1, 1.0), True)],
  ids=["fixed", "softmin", "relative"],
)
def test_gradient_matches_central_differences_in_float64(alphas, relative):
  X, Y, splits = _data(np.float64)
  rng = np.random.default_rng(3)
  params = {
    "w1": jnp.asarray(rng.normal(size=(N_FEATURES, 16)) / 4),
    "w2": jnp.asarray(rng.normal(size=(16, 12)) / 4),
  }
  score = jax.jit(
    lambda p: _model_score(p, jnp.asarray(X), Y, splits, jnp.asarray(alphas), relative)
  )
  grad = jax.grad(score)(params)
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grad))
  for seed in range(3):
    key = jax.random.key(seed)
    direction = {
      name: jax.random.normal(jax.random.fold_in(key, i), value.shape, jnp.float64)
      for i, (name, value) in enumerate(params.items())
    }
    plus = jax.tree.map(lambda p, d: p + EPS * d, params, direction)
    minus = jax.tree.map(lambda p, d: p - EPS * d, params, direction)
    numeric = (score(plus) - score(minus)) / (2 * EPS)
    analytic = sum(jnp.vdot(grad[name], direction[name]) for name in ("w1", "w2"))
    assert abs(float(numeric)) > 1e-6  # the direction moves the score
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-10)


def test_gradient_is_finite_for_a_dead_feature_map():
  _, Y, splits = _data(np.float64)
  features = jnp.zeros((N_STIMULI, 4))  # every prediction constant
  value, grad = jax.value_and_grad(
    lambda f: differentiable.ridge_predictivity(
      f, Y, splits.train, splits.test, alphas=(1.0, 10.0)
    )
  )(features)
  assert float(value) == 0.0
  assert np.all(np.isfinite(grad))


@pytest.mark.parametrize(
  ("kwargs", "match"),
  [
    (dict(features=np.zeros((60,))), "features must be"),
    (dict(targets=np.zeros((59, 5))), "targets must be"),
    (dict(alphas=(-1.0,)), "alphas must all be positive"),
    (dict(alphas=(1.0, np.nan)), "alphas must all be positive"),
    (dict(alphas=np.zeros((0,))), "alphas must be a non-empty"),
    (dict(temperature=0.0), "temperature must be positive"),
  ],
)
def test_bad_input_names_the_argument(kwargs, match):
  X, Y, splits = _data(np.float64)
  args = dict(features=X, targets=Y, alphas=(1.0,))
  args.update(kwargs)
  features, targets = args.pop("features"), args.pop("targets")
  with pytest.raises(ValueError, match=match):
    differentiable.ridge_predictivity(
      features, targets, splits.train, splits.test, **args
    )


def test_features_that_are_not_finite_score_nan_not_zero():
  X, Y, splits = _data(np.float64)
  X[3, 0] = np.nan
  value = differentiable.ridge_predictivity(
    X, Y, splits.train, splits.test, alphas=(1.0, 10.0)
  )
  assert np.isnan(float(value))
