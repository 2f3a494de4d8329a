"""Linear maps from model features to neuroids, fitted and applied on one split.

Each ``*_fit_predict`` function fits on the training stimuli of ONE split and
predicts the test stimuli of that split; callers batch over splits with
``jax.vmap`` (and over resamples, layers, ...). All functions are pure and
jit-able; which algorithm runs is decided from static shapes only.

Matrix products run at full float32 precision ("highest"): on GPUs and TPUs the
default uses TF32/bfloat16 passes whose ~1e-3 relative error is squared by the
Gram matrices these solvers decompose. On CPU this changes nothing.

Axis legend: n_train / n_test stimuli of the split, n_features model features,
n_neuroids recorded neuroids, n_alphas ridge penalties, n_components PLS
components.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxscore.kernels import linalg


class RidgeResult(NamedTuple):
  """Ridge predictions on the test stimuli and the penalty chosen per neuroid.

  Attributes:
    predictions: (n_test, n_neuroids) predicted responses.
    alpha: (n_neuroids,) penalty chosen for each neuroid.
  """

  predictions: jax.Array
  alpha: jax.Array


def _highest_precision(fn):
  """Traces ``fn`` with every matmul pinned to full precision (see above)."""

  @functools.wraps(fn)
  def wrapped(*args, **kwargs):
    with jax.default_matmul_precision("highest"):
      return fn(*args, **kwargs)

  return wrapped


def _check_regression_inputs(X_train, Y_train, X_test):
  """Validates shapes and returns the inputs cast to one floating dtype."""
  X_train, Y_train, X_test = map(jnp.asarray, (X_train, Y_train, X_test))
  for name, array in (("X_train", X_train), ("Y_train", Y_train), ("X_test", X_test)):
    if array.ndim != 2:
      raise ValueError(
        f"{name} must be a 2-D array, got shape {tuple(array.shape)}; reshape a "
        "single column to (n, 1)."
      )
  if Y_train.shape[0] != X_train.shape[0]:
    raise ValueError(
      f"Y_train must have one row per training stimulus, {X_train.shape[0]} as in "
      f"X_train, got {Y_train.shape[0]}."
    )
  if X_test.shape[1] != X_train.shape[1]:
    raise ValueError(
      f"X_test must have the {X_train.shape[1]} features of X_train, got "
      f"{X_test.shape[1]}."
    )
  if X_train.shape[0] < 2:
    raise ValueError(
      f"X_train must have at least 2 training stimuli, got {X_train.shape[0]}."
    )
  dtype = jnp.result_type(X_train, Y_train, X_test)
  if not jnp.issubdtype(dtype, jnp.floating):
    dtype = jnp.result_type(float)
  return X_train.astype(dtype), Y_train.astype(dtype), X_test.astype(dtype)


def _centre(X_train, Y_train, X_test):
  """Centres X and Y on the training rows; returns the centred arrays and E[Y]."""
  x_mean = jnp.mean(X_train, axis=0)  # (n_features,)
  y_mean = jnp.mean(Y_train, axis=0)  # (n_neuroids,)
  return X_train - x_mean, Y_train - y_mean, X_test - x_mean, y_mean


# Ridge with an unpenalised intercept; penalty chosen per neuroid by exact LOO.
#
# After centring on the training rows the intercept is E[Y] and the weights
# solve min_W ||Yc - Xc W||^2 + alpha ||W||^2 for each neuroid. One symmetric
# eigendecomposition serves every alpha (g = 1 / (lam + alpha)):
#   primal, n_features <= n_train: Xc^T Xc = V diag(lam) V^T    (p x p)
#     basis M = Xc V (n, p), B = M^T Yc (p, T), test basis P = Xte V (t, p)
#     fitted = M diag(g) B,  hat diagonal h = (M * M) g
#   dual, n_features > n_train:    Xc Xc^T = Q diag(lam) Q^T    (n x n)
#     basis M = Q (n, n), B = Q^T Yc (n, T), test basis P = Xte Xc^T Q (t, n)
#     fitted = Q diag(lam g) B, so no p x p matrix is ever formed
#   test predictions, both: P diag(g) B + E[Y]
# The hat matrix of ridge with an unpenalised intercept is
#   H = 1 1^T / n + Xc (Xc^T Xc + alpha I)^-1 Xc^T,
# so the leave-one-out residual is (Yc - fitted)_i / (1 - h_i - 1/n). The mean
# squared LOO residual per neuroid is what sklearn's RidgeCV (default 'gcv'
# mode, fit_intercept=True, alpha_per_target=True) minimises; its gram and cov
# modes subtract the same 1/n. Ties go to the earliest alpha, as in sklearn.
# In the dual Q is complete, so both residual and denominator are written
# without the cancellation 1 - h (ruinous in float32 at small alpha, where the
# fit nearly interpolates): Yc - fitted = Q diag(alpha g) B and
# 1 - h_i - 1/n = (Q * Q) (alpha g) - 1/n, the -1/n cancelling the constant
# eigenvector (lam = 0) exactly.
# Eigenvalues are clamped at 0, and components below 10 eps lam_max are
# null directions of Xc (their M column and B row vanish in exact arithmetic):
# they take lam = 0 and are dropped from the fit instead of being divided by a
# small alpha.


class _Eigenbasis(NamedTuple):
  """One split's eigendecomposition, shared by every alpha (see above)."""

  primal: bool  # static: True for the feature Gram, False for the stimulus Gram
  eigvals: jax.Array  # (r,) clamped eigenvalues lam
  keep: jax.Array  # (r,) bool, False for numerically null directions
  basis: jax.Array  # (n_train, r) M
  coords: jax.Array  # (r, n_neuroids) B = M^T Yc
  test_basis: jax.Array  # (n_test, r) P


def _eigenbasis(Xc, Yc, Xte) -> _Eigenbasis:
  n_train, n_features = Xc.shape
  primal = n_features <= n_train  # static: decided from shapes
  if primal:
    eigvals, V = linalg.eigh(Xc.T @ Xc)  # (p,), (p, p)
    basis = Xc @ V  # (n_train, p)
    test_basis = Xte @ V  # (n_test, p)
  else:
    return _kernel_eigenbasis(Xc @ Xc.T, Xte @ Xc.T, Yc)
  return _finish_eigenbasis(True, eigvals, basis, test_basis, Yc)


def _kernel_eigenbasis(K_train, K_test, Yc) -> _Eigenbasis:
  """Dual eigenbasis from centred kernels (n_train, n_train), (n_test, n_train)."""
  eigvals, basis = linalg.eigh(K_train)  # (n,), (n_train, n_train)
  test_basis = K_test @ basis  # (n_test, n_train)
  return _finish_eigenbasis(False, eigvals, basis, test_basis, Yc)


def _finish_eigenbasis(primal, eigvals, basis, test_basis, Yc) -> _Eigenbasis:
  eigvals = jnp.maximum(eigvals, 0)
  # eigh's roundoff puts null eigenvalues at ~eps * lam_max (measured 0.3 eps in
  # float32 for n = 1500); 10 eps leaves a margin and keeps every eigenvalue
  # that float32 resolves at all.
  keep = eigvals > 10 * jnp.finfo(eigvals.dtype).eps * eigvals[-1]
  coords = basis.T @ Yc  # (r, n_neuroids)
  return _Eigenbasis(primal, eigvals, keep, basis, coords, test_basis)


def _gain(eb: _Eigenbasis, alpha):
  """g = 1 / (lam + alpha) on kept components, 0 on null ones; shape of alpha."""
  alpha = jnp.asarray(alpha)[..., None]
  return jnp.where(eb.keep, 1 / jnp.where(eb.keep, eb.eigvals + alpha, 1), 0)


def _loo_mse(eb: _Eigenbasis, Yc, alpha):
  """Mean squared leave-one-out residual per neuroid for one alpha: (n_neuroids,)."""
  n_train = Yc.shape[0]
  gain = _gain(eb, alpha)  # (r,)
  if eb.primal:
    residual = Yc - eb.basis @ (gain[:, None] * eb.coords)  # (n_train, T)
    denominator = 1 - 1 / n_train - (eb.basis * eb.basis) @ gain  # (n_train,)
  else:
    shrink = jnp.where(eb.keep, alpha * gain, 1)  # (r,) alpha / (lam + alpha)
    residual = eb.basis @ (shrink[:, None] * eb.coords)
    denominator = (eb.basis * eb.basis) @ shrink - 1 / n_train
  loo = residual / denominator[:, None]
  mse = jnp.mean(loo * loo, axis=0)
  # A NaN (0/0 at an interpolating alpha) must never win the argmin.
  return jnp.where(jnp.isnan(mse), jnp.inf, mse)


def _ridge_predict(eb: _Eigenbasis, alpha):
  """Centred test predictions, one alpha per neuroid: (n_test, n_neuroids)."""
  gain = _gain(eb, alpha)  # (n_neuroids, r)
  return eb.test_basis @ (gain.T * eb.coords)


def _check_alphas(alphas, dtype):
  alphas = jnp.asarray(alphas)
  if alphas.ndim != 1 or alphas.shape[0] == 0:
    raise ValueError(
      "alphas must be a non-empty 1-D array of positive penalties, got shape "
      f"{tuple(alphas.shape)}."
    )
  return alphas.astype(dtype)


# Solvers. "eigh" decomposes one Gram matrix and serves every alpha from its
# spectrum. "cholesky" factors G + alpha I once per alpha instead (n_alphas
# Cholesky factorisations of p^3 / 3 flops each, against ~4 p^3 for eigh):
# batched symmetric eigendecompositions have run one matrix at a time on
# NVIDIA GPUs in some JAX versions, while batched Cholesky factorisations run
# in parallel. "auto" picks eigh on CPU (measured faster here, see
# benchmarks/SPEED.md) and cholesky on GPU and TPU. NOTE: the GPU choice is
# not measured; no GPU was available when it was made. Revisit with a GPU
# run of benchmarks/speed.py. The Cholesky path serves the primal form only
# (n_features <= n_train); wider layers use eigh whatever the solver.
SOLVERS = ("eigh", "cholesky", "auto")


def resolve_solver(solver: str, backend: str | None = None) -> str:
  """``"eigh"`` or ``"cholesky"`` for ``solver`` on ``backend`` (see above).

  Args:
    solver: one of SOLVERS.
    backend: a JAX backend name; default ``jax.default_backend()``.
  """
  if solver not in SOLVERS:
    raise ValueError(f"solver must be one of {', '.join(SOLVERS)}, got {solver!r}.")
  if solver != "auto":
    return solver
  backend = jax.default_backend() if backend is None else backend
  return "eigh" if backend == "cpu" else "cholesky"


# Cholesky path, per alpha a, on the centred training Gram G = Xc^T Xc (p, p)
# and cross-product C = Xc^T Yc (p, T):
#   L L^T = G + a I,  W = L^-T L^-1 C  (p, T)
#   LOO: hat diagonal h_i = ||L^-1 xc_i||^2 (one triangular solve with the
#     n_train rows as right-hand sides), residual (Yc - Xc W)_i / (1 - h_i - 1/n)
#   GCV: tr H = 1 + p - a ||L^-1||_F^2 (= 1 + sum_j lam_j / (lam_j + a)) and
#     RSS = ||Yc||^2 - sum(W * C) - a ||W||^2   (since G W = C - a W)
# The RSS identity subtracts, so in float32 it loses digits when the fit
# explains nearly all of the response energy (R^2 -> 1); the eigh path sums
# positive terms instead. Test predictions are kept for every alpha
# (n_alphas, n_test, T) and the chosen one picked per neuroid.


def _cholesky_factor(gram, alpha):
  p = gram.shape[0]
  return linalg.cholesky(gram + alpha * jnp.eye(p, dtype=gram.dtype))  # (p, p)


def _cholesky_solve(L, B):
  Z = linalg.solve_lower(L, B)
  return linalg.solve_lower_transposed(L, Z)


def _pick(per_alpha, criterion, alphas):
  """Per-neuroid argmin of criterion (A, T); per_alpha (A, t, T) -> (t, T)."""
  criterion = jnp.where(jnp.isnan(criterion), jnp.inf, criterion)
  best = jnp.argmin(criterion, axis=0)  # (T,)
  chosen = jnp.take_along_axis(per_alpha, best[None, None, :], axis=0)[0]
  return chosen, alphas[best]


def _cholesky_loo(Xc, Yc, Xte, alphas):
  """LOO-chosen ridge via one Cholesky per alpha: (predictions, alpha)."""
  n_train = Xc.shape[0]
  gram, cross = Xc.T @ Xc, Xc.T @ Yc  # (p, p), (p, T)

  def one_alpha(alpha):
    L = _cholesky_factor(gram, alpha)
    W = _cholesky_solve(L, cross)  # (p, T)
    half_hat = linalg.solve_lower(L, Xc.T)  # (p, n)
    h = jnp.sum(half_hat * half_hat, axis=0)  # (n_train,)
    loo = (Yc - Xc @ W) / (1 - h - 1 / n_train)[:, None]
    return jnp.mean(loo * loo, axis=0), Xte @ W  # (T,), (n_test, T)

  mse, predictions = jax.lax.map(one_alpha, alphas)
  return _pick(predictions, mse, alphas)


def _cholesky_gcv(gram, cross, sum_squares, n_train, X_test, alphas):
  """GCV-chosen ridge via one Cholesky per alpha: (predictions, alpha)."""
  p = gram.shape[0]
  eye = jnp.eye(p, dtype=gram.dtype)

  def one_alpha(alpha):
    L = _cholesky_factor(gram, alpha)
    W = _cholesky_solve(L, cross)  # (p, T)
    L_inv = linalg.solve_lower(L, eye)  # (p, p)
    dof = 1 + p - alpha * jnp.sum(L_inv * L_inv)
    rss = sum_squares - jnp.sum(W * cross, axis=0) - alpha * jnp.sum(W * W, axis=0)
    rss = jnp.maximum(rss, 0)
    return rss / (n_train - dof) ** 2, X_test @ W  # (T,), (n_test, T)

  gcv, predictions = jax.lax.map(one_alpha, alphas)
  return _pick(predictions, gcv, alphas)


@functools.partial(jax.jit, static_argnames="solver")
@_highest_precision
def ridge_fit_predict(
  X_train, Y_train, X_test, alphas, *, solver: str = "eigh"
) -> RidgeResult:
  """Ridge regression with the penalty chosen per neuroid by exact LOO.

  Fits an intercept (X and Y are centred on the training rows). For each
  neuroid the alpha with the smallest mean squared leave-one-out error inside
  the training stimuli is chosen, as sklearn's
  ``RidgeCV(alphas, alpha_per_target=True)`` does, then used to predict the
  test stimuli. One eigendecomposition serves every alpha: of the feature Gram
  when n_features <= n_train, of the stimulus Gram otherwise.

  Args:
    X_train: (n_train, n_features) features of the training stimuli.
    Y_train: (n_train, n_neuroids) responses to the training stimuli.
    X_test: (n_test, n_features) features of the test stimuli.
    alphas: (n_alphas,) positive penalties to choose from.
    solver: ``"eigh"`` (one eigendecomposition for every alpha),
      ``"cholesky"`` (one Cholesky factorisation per alpha; primal form only,
      layers wider than n_train use eigh) or ``"auto"`` (see SOLVERS).

  Returns:
    RidgeResult with predictions (n_test, n_neuroids) and the chosen alpha
    (n_neuroids,), in the floating dtype of the inputs.
  """
  X_train, Y_train, X_test = _check_regression_inputs(X_train, Y_train, X_test)
  alphas = _check_alphas(alphas, X_train.dtype)
  Xc, Yc, Xte, y_mean = _centre(X_train, Y_train, X_test)
  if resolve_solver(solver) == "cholesky" and Xc.shape[1] <= Xc.shape[0]:
    predictions, alpha = _cholesky_loo(Xc, Yc, Xte, alphas)
    return RidgeResult(predictions=predictions + y_mean, alpha=alpha)
  return _select_and_predict(_eigenbasis(Xc, Yc, Xte), Yc, y_mean, alphas)


def _select_and_predict(eb: _Eigenbasis, Yc, y_mean, alphas) -> RidgeResult:
  mse = jax.vmap(lambda alpha: _loo_mse(eb, Yc, alpha))(alphas)  # (A, T)
  alpha = alphas[jnp.argmin(mse, axis=0)]  # (n_neuroids,)
  return RidgeResult(predictions=_ridge_predict(eb, alpha) + y_mean, alpha=alpha)


@jax.jit
@_highest_precision
def ridge_path_predict(X_train, Y_train, X_test, alphas):
  """Ridge test predictions for every alpha, from one eigendecomposition.

  For choosing alpha outside this function (e.g. on an outer split) or for
  plotting the regularisation path.

  Args:
    X_train: (n_train, n_features) features of the training stimuli.
    Y_train: (n_train, n_neuroids) responses to the training stimuli.
    X_test: (n_test, n_features) features of the test stimuli.
    alphas: (n_alphas,) positive penalties.

  Returns:
    (n_alphas, n_test, n_neuroids) predictions, one slice per alpha.
  """
  X_train, Y_train, X_test = _check_regression_inputs(X_train, Y_train, X_test)
  alphas = _check_alphas(alphas, X_train.dtype)
  Xc, Yc, Xte, y_mean = _centre(X_train, Y_train, X_test)
  eb = _eigenbasis(Xc, Yc, Xte)
  n_neuroids = Yc.shape[1]

  def one_alpha(alpha):
    return _ridge_predict(eb, jnp.full((n_neuroids,), alpha)) + y_mean

  return jax.vmap(one_alpha)(alphas)


# Exact PLS2: sklearn's PLSRegression (NIPALS, mode A, regression deflation,
# scale=False) run to convergence, without its inner power iterations.
#
# X0, Y0 are the training data centred on their means. Component k:
#   w_k = top left singular vector of the deflated cross-product C_k = X_k^T Y_k
#         (p x T), from eigh of the small T x T matrix C_k^T C_k (or of the
#         p x p C_k C_k^T when p < T); NIPALS converges to the same vector.
#   t_k = X_k w_k = X0 r_k, with rotation r_k = w_k - R_<k (P_<k^T w_k),
#         because X_k = X0 (I - R_<k P_<k^T).
#   p_k = X0^T t_k / (t_k^T t_k),  q_k = Y0^T t_k / (t_k^T t_k)   (loadings)
#   C_{k+1} = C_k - (t_k^T t_k) p_k q_k^T, since X_{k+1}^T t_k = 0.
# X_k is never formed: memory is O(n p + p T + p K), fine for p = 20,000.
# Predictions: (X_test - E[X]) R Q^T + E[Y], i.e. sklearn's coef_ = R Q^T.
# A component whose score is numerically zero (rank exhausted, constant or
# duplicated features, a cross-product with no signal left) gets r = p = q = 0,
# so it contributes nothing where NIPALS would divide by ~0.


def _top_left_singular_vector(C):
  """Unit top left singular vector of C (n_features, n_neuroids); 0 if C = 0."""
  n_features, n_neuroids = C.shape
  if n_neuroids <= n_features:
    _, V = linalg.eigh(C.T @ C)  # (T, T)
    u = C @ V[:, -1]  # (p,)
  else:
    _, U = linalg.eigh(C @ C.T)  # (p, p)
    u = U[:, -1] * jnp.linalg.norm(C.T @ U[:, -1])
  norm = jnp.linalg.norm(u)
  return jnp.where(norm > 0, u / jnp.where(norm > 0, norm, 1), 0)


def _check_n_components(n_components, n_train, n_features):
  if not isinstance(n_components, int | np.integer) or n_components < 1:
    raise ValueError(f"n_components must be a positive integer, got {n_components!r}.")
  if n_components > n_features:
    raise ValueError(
      f"n_components={n_components} exceeds the number of features, "
      f"{n_features}; PLS can extract at most n_features components."
    )
  if n_components > n_train - 1:
    raise ValueError(
      f"n_components={n_components} exceeds n_train - 1 = {n_train - 1} "
      f"(n_train = {n_train} training stimuli); centred data has at most "
      "n_train - 1 independent directions."
    )


@functools.partial(jax.jit, static_argnames="n_components")
@_highest_precision
def pls_fit_predict(X_train, Y_train, X_test, *, n_components: int = 25):
  """PLS regression (Brain-Score's default map), fitted exactly.

  Agrees with sklearn's ``PLSRegression(n_components, scale=False)`` run to
  convergence (tight ``tol``): X and Y are centred on the training rows, not
  scaled. Never returns NaN: components beyond the numerical rank of the data
  contribute nothing.

  Args:
    X_train: (n_train, n_features) features of the training stimuli.
    Y_train: (n_train, n_neuroids) responses to the training stimuli.
    X_test: (n_test, n_features) features of the test stimuli.
    n_components: number of PLS components (static); at most n_features and
      at most n_train - 1.

  Returns:
    (n_test, n_neuroids) predictions in the floating dtype of the inputs.
  """
  X_train, Y_train, X_test = _check_regression_inputs(X_train, Y_train, X_test)
  n_train, n_features = X_train.shape
  n_neuroids = Y_train.shape[1]
  _check_n_components(n_components, n_train, n_features)
  X0, Y0, Xte, y_mean = _centre(X_train, Y_train, X_test)
  dtype = X0.dtype
  # A score is zero when its norm is at roundoff level relative to ||X0||.
  tolerance = jnp.sqrt(jnp.finfo(dtype).eps) * jnp.linalg.norm(X0)

  def component(k, state):
    C, R, P, Q = state  # (p, T), (p, K), (p, K), (T, K)
    w = _top_left_singular_vector(C)  # (p,)
    r = w - R @ (P.T @ w)  # (p,)
    t = X0 @ r  # (n_train,)
    tt = t @ t
    # ||w|| = 1, so a real score has ||t|| ~ ||X_k||; roundoff is ~ ||X0|| ||r||.
    scale = jnp.maximum(1, jnp.linalg.norm(r))
    found = tt > (tolerance * scale) ** 2
    inv_tt = jnp.where(found, 1 / jnp.where(found, tt, 1), 0)
    p = (X0.T @ t) * inv_tt  # (p,)
    q = (Y0.T @ t) * inv_tt  # (T,)
    C = C - jnp.outer(p, q) * jnp.where(found, tt, 0)
    r = jnp.where(found, r, 0)
    return C, R.at[:, k].set(r), P.at[:, k].set(p), Q.at[:, k].set(q)

  init = (
    X0.T @ Y0,
    jnp.zeros((n_features, n_components), dtype),
    jnp.zeros((n_features, n_components), dtype),
    jnp.zeros((n_neuroids, n_components), dtype),
  )
  _, R, _, Q = jax.lax.fori_loop(0, n_components, component, init)
  return (Xte @ R) @ Q.T + y_mean  # (n_test, n_neuroids)


# The same PLS from the split's moments G = X0^T X0 (p, p) and C0 = X0^T Y0
# (p, T): every use of X0 above is X0^T X0 r or Y0^T X0 r, so
#   t^T t = r^T G r,  p = G r / t^T t,  q = C0^T r / t^T t,
#   C_{k+1} = C_k - (G r) q^T,  ||X0||_F^2 = trace(G).
# Each component then reads one p x p matrix instead of the n_train x p data
# twice, and the moments of all splits are downdated from whole-data moments
# (see scoring), so the training rows are never gathered per split.


@functools.partial(jax.jit, static_argnames="n_components")
@_highest_precision
def pls_from_moments(gram, cross, X_test, y_mean, *, n_components: int):
  """``pls_fit_predict`` from centred training moments.

  Args:
    gram: (n_features, n_features) ``X0^T X0``, X centred on its training mean.
    cross: (n_features, n_neuroids) ``X0^T Y0``, Y centred likewise.
    X_test: (n_test, n_features) test features centred on the training mean.
    y_mean: (n_neuroids,) training mean of the responses.
    n_components: number of PLS components (static); the caller checks it
      against n_features and n_train.

  Returns:
    (n_test, n_neuroids) predictions, equal to ``pls_fit_predict``'s.
  """
  n_features, n_neuroids = cross.shape
  dtype = gram.dtype
  tolerance = jnp.sqrt(jnp.finfo(dtype).eps * jnp.maximum(jnp.trace(gram), 0))

  def component(k, state):
    C, R, P, Q = state  # (p, T), (p, K), (p, K), (T, K)
    w = _top_left_singular_vector(C)  # (p,)
    r = w - R @ (P.T @ w)  # (p,)
    Gr = gram @ r  # (p,)
    tt = jnp.maximum(r @ Gr, 0)
    scale = jnp.maximum(1, jnp.linalg.norm(r))
    found = tt > (tolerance * scale) ** 2
    inv_tt = jnp.where(found, 1 / jnp.where(found, tt, 1), 0)
    q = (cross.T @ r) * inv_tt  # (T,)
    C = C - jnp.outer(jnp.where(found, Gr, 0), q)
    r = jnp.where(found, r, 0)
    return C, R.at[:, k].set(r), P.at[:, k].set(Gr * inv_tt), Q.at[:, k].set(q)

  init = (
    cross,
    jnp.zeros((n_features, n_components), dtype),
    jnp.zeros((n_features, n_components), dtype),
    jnp.zeros((n_neuroids, n_components), dtype),
  )
  _, R, _, Q = jax.lax.fori_loop(0, n_components, component, init)
  return (X_test @ R) @ Q.T + y_mean  # (n_test, n_neuroids)


# Kernel (Gram) forms, for layers much wider than the stimulus set.
#
# Every quantity both solvers need is an inner product between centred
# stimuli, so one (n_stimuli, n_stimuli) Gram matrix G = X X^T per layer,
# computed once, serves every split: the n_features axis never enters a split.
# Centring on a split's training rows is a double centring of G:
#   K_train = G_tt - 1 m^T - m 1^T + mu,   m = mean of G_tt's rows, mu = mean(m)
#   K_test  = G_st - (row means of G_st) 1^T - 1 m^T + mu.
# PLS in this basis: every weight, rotation and loading of the primal
# algorithm above lies in the row space of X0, so write r = X0^T a. Then, with
# Y_k the deflated responses (C_k = X0^T Y_k):
#   C_k^T C_k = Y_k^T K Y_k                       (T x T)
#   w = X0^T Y_k v / sqrt(lam_max)                (a_w = Y_k v / sqrt(lam_max))
#   P^T w = (T_<k^T K a_w) / diag(t^T t)          (p_j = X0^T t_j / t_j^T t_j)
#   a_r = a_w - A_<k (P^T w),  t = K a_r,  q = Y0^T t / t^T t
#   Y_{k+1} = Y_k - t q^T                         (C_{k+1} = C_k - t^T t p q^T)
#   predictions = K_test A Q^T + E[Y].


def center_gram(gram, train, test):
  """Centres a stimulus Gram matrix on one split's training stimuli.

  Args:
    gram: (n_stimuli, n_stimuli) inner products ``X X^T`` of all stimuli
      (centring X on all stimuli first keeps float32 accurate).
    train: (n_train,) indices of the training stimuli.
    test: (n_test,) indices of the test stimuli.

  Returns:
    K_train (n_train, n_train) and K_test (n_test, n_train): inner products of
    the stimuli centred on the training mean.
  """
  gram = jnp.asarray(gram)
  G_tt = gram[train][:, train]  # (n_train, n_train)
  G_st = gram[test][:, train]  # (n_test, n_train)
  m = jnp.mean(G_tt, axis=0)  # (n_train,) x_j . mean
  mu = jnp.mean(m)  # mean . mean
  K_train = G_tt - m[:, None] - m[None, :] + mu
  K_test = G_st - jnp.mean(G_st, axis=1, keepdims=True) - m[None, :] + mu
  return K_train, K_test


def _check_gram_inputs(K_train, K_test, Y_train):
  K_train, K_test, Y_train = map(jnp.asarray, (K_train, K_test, Y_train))
  n_train = K_train.shape[0]
  if K_train.shape != (n_train, n_train) or K_test.ndim != 2:
    raise ValueError(
      "K_train must be square (n_train, n_train) and K_test 2-D, got "
      f"{tuple(K_train.shape)} and {tuple(K_test.shape)}."
    )
  if K_test.shape[1] != n_train or Y_train.shape[0] != n_train:
    raise ValueError(
      f"K_test must have {n_train} columns and Y_train {n_train} rows, one per "
      f"training stimulus; got {tuple(K_test.shape)} and {tuple(Y_train.shape)}."
    )
  dtype = jnp.result_type(K_train, K_test, Y_train)
  return K_train.astype(dtype), K_test.astype(dtype), Y_train.astype(dtype)


@jax.jit
@_highest_precision
def ridge_fit_predict_gram(K_train, K_test, Y_train, alphas) -> RidgeResult:
  """``ridge_fit_predict`` from centred kernels (see ``center_gram``).

  Args:
    K_train: (n_train, n_train) centred training kernel.
    K_test: (n_test, n_train) centred test-by-training kernel.
    Y_train: (n_train, n_neuroids) responses to the training stimuli.
    alphas: (n_alphas,) positive penalties to choose from.
  """
  K_train, K_test, Y_train = _check_gram_inputs(K_train, K_test, Y_train)
  alphas = _check_alphas(alphas, K_train.dtype)
  y_mean = jnp.mean(Y_train, axis=0)
  Yc = Y_train - y_mean
  eb = _kernel_eigenbasis(K_train, K_test, Yc)
  return _select_and_predict(eb, Yc, y_mean, alphas)


@functools.partial(jax.jit, static_argnames=("n_components", "n_features"))
@_highest_precision
def pls_fit_predict_gram(
  K_train, K_test, Y_train, *, n_components, n_features: int | None = None
):
  """``pls_fit_predict`` from centred kernels (see ``center_gram``).

  Args:
    K_train: (n_train, n_train) centred training kernel.
    K_test: (n_test, n_train) centred test-by-training kernel.
    Y_train: (n_train, n_neuroids) responses to the training stimuli.
    n_components: number of PLS components (static).
    n_features: width of the layer the kernels came from, for the same
      component limit as the primal form; None when the caller has already
      checked it (so that layers of any width share one compilation).

  Returns:
    (n_test, n_neuroids) predictions, equal to ``pls_fit_predict``'s.
  """
  K_train, K_test, Y_train = _check_gram_inputs(K_train, K_test, Y_train)
  n_train, n_neuroids = Y_train.shape
  _check_n_components(n_components, n_train, n_features or n_components)
  dtype = K_train.dtype
  y_mean = jnp.mean(Y_train, axis=0)
  Y0 = Y_train - y_mean
  # The primal threshold sqrt(eps) ||X0||_F, with ||X0||_F^2 = trace(K).
  tolerance = jnp.sqrt(jnp.finfo(dtype).eps * jnp.maximum(jnp.trace(K_train), 0))

  def component(k, state):
    Yk, A, Ts, inv_tts, Q = state  # (n,T), (n,K), (n,K), (K,), (T,K)
    KY = K_train @ Yk  # (n_train, T)
    lam, V = linalg.eigh(Yk.T @ KY)  # C^T C, (T,), (T, T)
    top = jnp.maximum(lam[-1], 0)
    has_signal = top > 0
    a_w = (
      Yk
      @ V[:, -1]
      * jnp.where(has_signal, jax.lax.rsqrt(jnp.where(has_signal, top, 1)), 0)
    )  # (n_train,)
    Ka_w = K_train @ a_w  # (n_train,)
    a_r = a_w - A @ ((Ts.T @ Ka_w) * inv_tts)  # (n_train,)
    t = K_train @ a_r  # (n_train,)
    tt = t @ t
    r_norm = jnp.sqrt(jnp.maximum(a_r @ t, 0))  # ||r|| = sqrt(a^T K a)
    found = tt > (tolerance * jnp.maximum(1, r_norm)) ** 2
    inv_tt = jnp.where(found, 1 / jnp.where(found, tt, 1), 0)
    q = (Y0.T @ t) * inv_tt  # (T,)
    t = jnp.where(found, t, 0)
    return (
      Yk - jnp.outer(t, q),
      A.at[:, k].set(jnp.where(found, a_r, 0)),
      Ts.at[:, k].set(t),
      inv_tts.at[k].set(inv_tt),
      Q.at[:, k].set(q),
    )

  init = (
    Y0,
    jnp.zeros((n_train, n_components), dtype),
    jnp.zeros((n_train, n_components), dtype),
    jnp.zeros((n_components,), dtype),
    jnp.zeros((n_neuroids, n_components), dtype),
  )
  _, A, _, _, Q = jax.lax.fori_loop(0, n_components, component, init)
  return (K_test @ A) @ Q.T + y_mean  # (n_test, n_neuroids)


# Ridge with the penalty chosen per neuroid by generalised cross-validation.
#
# GCV (Golub, Heath & Wahba 1979) replaces each leave-one-out residual's own
# leverage by the mean leverage: GCV(alpha) = n RSS(alpha) / (n - dof)^2, with
# dof = 1 + sum_j lam_j / (lam_j + alpha) (the 1 is the intercept). Both terms
# are spectral in the eigendecomposition G = V diag(lam) V^T of the centred
# training Gram Xc^T Xc, with b = V^T Xc^T Yc (p, T):
#   RSS = ||Yc||^2 - sum_j b_j^2 / lam_j * (1 - (alpha / (lam_j + alpha))^2),
# so every alpha costs O(p T) and no n x p product is formed after the Gram.
# The Gram and cross-product can be downdated from whole-data moments (see
# scoring), which is what makes this path fast. Predictions at the chosen
# penalties: Xte_c V diag(1 / (lam + alpha)) b.


def _gcv_choice(eigvals, keep, energy, rest, n_train, alphas):
  """Per-neuroid argmin of GCV over alphas (see above).

  RSS(alpha) = rest + sum_j (alpha / (lam_j + alpha))^2 energy_j, where
  energy (r, T) is the response energy along each kept direction and rest
  (T,) the energy outside them; written as a sum of positive terms it has no
  cancellation when the fit nearly interpolates.
  """

  def criterion(alpha):
    shrink = jnp.where(keep, alpha / (eigvals + alpha), 0)  # (r,)
    rss = rest + (shrink * shrink) @ energy  # (T,)
    dof = 1 + jnp.sum(jnp.where(keep, eigvals / (eigvals + alpha), 0))
    return rss / (n_train - dof) ** 2  # (T,), the factor n dropped

  gcv = jax.vmap(criterion)(alphas)  # (A, T)
  gcv = jnp.where(jnp.isnan(gcv), jnp.inf, gcv)
  return alphas[jnp.argmin(gcv, axis=0)]  # (T,)


@functools.partial(jax.jit, static_argnames="solver")
@_highest_precision
def ridge_gcv_from_moments(
  gram, cross, sum_squares, n_train, X_test, y_mean, alphas, *, solver="eigh"
) -> RidgeResult:
  """Ridge with GCV-chosen penalties, from centred training moments.

  Args:
    gram: (n_features, n_features) ``Xc^T Xc`` of the training stimuli, X
      centred on its training mean.
    cross: (n_features, n_neuroids) ``Xc^T Yc``, Y centred likewise.
    sum_squares: (n_neuroids,) ``sum(Yc^2)`` over the training stimuli.
    n_train: number of training stimuli.
    X_test: (n_test, n_features) test features centred on the training mean.
    y_mean: (n_neuroids,) training mean of the responses.
    alphas: (n_alphas,) positive penalties to choose from.
    solver: ``"eigh"``, ``"cholesky"`` or ``"auto"``, as in
      ``ridge_fit_predict``; the Cholesky path takes tr H from the inverse
      factor (see the comment on the Cholesky path).

  Returns:
    RidgeResult: predictions (n_test, n_neuroids), chosen alpha (n_neuroids,).
  """
  dtype = gram.dtype
  alphas = _check_alphas(alphas, dtype)
  if resolve_solver(solver) == "cholesky":
    predictions, alpha = _cholesky_gcv(
      gram, cross, sum_squares, n_train, X_test, alphas
    )
    return RidgeResult(predictions=predictions + y_mean, alpha=alpha)
  eigvals, V = linalg.eigh(gram)  # (p,), (p, p)
  eigvals = jnp.maximum(eigvals, 0)
  keep = eigvals > 10 * jnp.finfo(dtype).eps * eigvals[-1]
  b = V.T @ cross  # (p, T)
  energy = jnp.where(keep[:, None], b * b / jnp.where(keep, eigvals, 1)[:, None], 0)
  rest = jnp.maximum(sum_squares - jnp.sum(energy, axis=0), 0)  # outside span
  alpha = _gcv_choice(eigvals, keep, energy, rest, n_train, alphas)
  gain = jnp.where(keep, 1 / (eigvals + alpha[:, None]), 0)  # (T, p)
  predictions = (X_test @ V) @ (gain.T * b) + y_mean  # (n_test, T)
  return RidgeResult(predictions=predictions, alpha=alpha)


def ridge_gcv_fit_predict(
  X_train, Y_train, X_test, alphas, *, solver: str = "eigh"
) -> RidgeResult:
  """``ridge_gcv_from_moments`` from the training data of one split.

  Args:
    X_train: (n_train, n_features) features of the training stimuli.
    Y_train: (n_train, n_neuroids) responses to the training stimuli.
    X_test: (n_test, n_features) features of the test stimuli.
    alphas: (n_alphas,) positive penalties to choose from.
    solver: as in ``ridge_gcv_from_moments``.
  """
  X_train, Y_train, X_test = _check_regression_inputs(X_train, Y_train, X_test)
  Xc, Yc, Xte, y_mean = _centre(X_train, Y_train, X_test)
  with jax.default_matmul_precision("highest"):
    gram, cross = Xc.T @ Xc, Xc.T @ Yc
  sum_squares = jnp.sum(Yc * Yc, axis=0)
  n_train = X_train.shape[0]
  return ridge_gcv_from_moments(
    gram, cross, sum_squares, n_train, Xte, y_mean, alphas, solver=solver
  )


@jax.jit
@_highest_precision
def ridge_gcv_fit_predict_gram(K_train, K_test, Y_train, alphas) -> RidgeResult:
  """GCV-chosen ridge from centred kernels (see ``center_gram``).

  In the dual the eigenvectors Q of K_train give (U^T Yc)_j = (Q^T Yc)_j, so
  the explained energy per direction is ``coords**2``.

  Args:
    K_train: (n_train, n_train) centred training kernel.
    K_test: (n_test, n_train) centred test-by-training kernel.
    Y_train: (n_train, n_neuroids) responses to the training stimuli.
    alphas: (n_alphas,) positive penalties to choose from.
  """
  K_train, K_test, Y_train = _check_gram_inputs(K_train, K_test, Y_train)
  alphas = _check_alphas(alphas, K_train.dtype)
  y_mean = jnp.mean(Y_train, axis=0)
  Yc = Y_train - y_mean
  eb = _kernel_eigenbasis(K_train, K_test, Yc)
  # Q is complete, so the energy outside the kept directions is a sum too.
  squares = eb.coords * eb.coords  # (n_train, T)
  energy = jnp.where(eb.keep[:, None], squares, 0)
  rest = jnp.sum(jnp.where(eb.keep[:, None], 0, squares), axis=0)
  alpha = _gcv_choice(eb.eigvals, eb.keep, energy, rest, Y_train.shape[0], alphas)
  return RidgeResult(predictions=_ridge_predict(eb, alpha) + y_mean, alpha=alpha)
