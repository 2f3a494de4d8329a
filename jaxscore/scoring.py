"""Cross-validated neural predictivity of features, and the ceiling.

For one layer: on every split, a linear map (PLS or ridge) is fitted from the
layer's features to the repetition-averaged responses of the training
stimuli; it predicts the test stimuli; Pearson r per neuroid compares the
prediction with the measured responses. The split's score is the median over
neuroids; the raw score is the mean over splits and its error the standard
error over splits (ddof 0, as Brain-Score). The ceiling is the split-half
reliability of the neuroids, Spearman-Brown corrected, aggregated the same way.

All splits of a layer run in one jitted call. Layers narrower than the
stimulus set map over splits in batches sized to a memory budget; wider ones
go through one stimulus Gram matrix per layer, after which a split costs the
same whatever the width. Kernels compile once per shape: narrow layers of one
width share a compilation, and every wide layer shares one.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxscore import kernels
from jaxscore.kernels import regression as regression_lib

# 20 ridge penalties spanning Brain-Score's RidgeCV grid (0.01 to 1e7).
DEFAULT_ALPHAS = tuple(float(a) for a in np.logspace(-2, 7, 20))
MEMORY_BUDGET = 2 << 30  # bytes for the per-split copies of the features


@dataclasses.dataclass(frozen=True)
class Regression:
  """The map from features to neuroids.

  Attributes:
    kind: ``"pls"`` (partial least squares, centred, unscaled; Brain-Score's
      default) or ``"ridge"`` (penalty chosen per neuroid inside the training
      split, from ``alphas``).
    n_components: PLS components; a layer narrower than this, or a training
      set too small for it, uses as many as it can (recorded in the result).
    alphas: ridge penalties to choose from.
    selection: how ridge chooses its penalty: ``"loo"``, exact leave-one-out
      (what scikit-learn's RidgeCV minimises), or ``"gcv"``, generalised
      cross-validation, which needs only the spectrum and is several times
      faster on layers narrower than the stimulus set.
    solver: how ridge solves for every alpha on layers narrower than the
      training set: ``"eigh"`` (one eigendecomposition per split),
      ``"cholesky"`` (one Cholesky factorisation per alpha and split) or
      ``"auto"``: eigh on CPU, cholesky on GPU/TPU (the GPU choice is not
      measured yet; see ``kernels.regression.SOLVERS``). Wider layers always
      use eigh of the stimulus Gram.
  """

  kind: str = "pls"
  n_components: int = 25
  alphas: tuple[float, ...] = DEFAULT_ALPHAS
  selection: str = "loo"
  solver: str = "auto"

  def __post_init__(self):
    if self.kind not in REGRESSIONS:
      raise ValueError(
        f"Unknown regression {self.kind!r}; valid ones are {', '.join(REGRESSIONS)}."
      )
    if not isinstance(self.n_components, int) or self.n_components < 1:
      raise ValueError(
        f"n_components must be a positive integer, got {self.n_components!r}."
      )
    if not self.alphas or min(self.alphas) <= 0:
      raise ValueError(f"alphas must be positive, got {self.alphas}.")
    if self.selection not in ("loo", "gcv"):
      raise ValueError(f"selection must be 'loo' or 'gcv', got {self.selection!r}.")
    regression_lib.resolve_solver(self.solver)  # refuses unknown names

  def components_for(self, n_features: int, n_train: int) -> int:
    """PLS components a layer of this width can have (see ``n_components``)."""
    return min(self.n_components, n_features, n_train - 1)


REGRESSIONS = ("pls", "ridge")


@dataclasses.dataclass(frozen=True)
class Summary:
  """A score over splits: ``center`` (mean), ``error`` (SEM, ddof 0)."""

  center: float
  error: float
  per_split: np.ndarray  # (n_splits,) median over neuroids

  @classmethod
  def from_values(cls, values: np.ndarray) -> Summary:
    """Aggregates (n_splits, n_neuroids) values: median, then mean."""
    per_split = np.nanmedian(values, axis=1)
    return cls(
      center=float(per_split.mean()),
      error=float(per_split.std() / np.sqrt(len(per_split))),
      per_split=per_split,
    )


class CrossValidated(NamedTuple):
  """What cross-validation of one layer leaves behind.

  Attributes:
    r: (n_splits, n_neuroids) Pearson r on each split's test stimuli.
    alpha: (n_splits, n_neuroids) chosen ridge penalties; None for PLS.
    predictions: (n_splits, n_test, n_neuroids) held-out predictions, what
      the test-set bootstrap resamples.
    n_components: PLS components used (0 for ridge).
  """

  r: np.ndarray
  alpha: np.ndarray | None
  predictions: np.ndarray
  n_components: int


def resolve_dtype(dtype) -> jnp.dtype:
  """The compute dtype; float64 needs ``jax_enable_x64``."""
  try:
    dtype = jnp.dtype(dtype)
  except TypeError as e:
    raise ValueError(f"dtype must be float32 or float64, got {dtype!r}.") from e
  if dtype not in (jnp.float32, jnp.float64):
    raise ValueError(f"dtype must be float32 or float64, got {dtype}.")
  if dtype == jnp.float64 and not jax.config.jax_enable_x64:
    raise ValueError(
      "dtype float64 needs 64-bit JAX: set JAX_ENABLE_X64=1 or call "
      "jax.config.update('jax_enable_x64', True) before scoring."
    )
  return dtype


def cross_validated_r(
  features: np.ndarray,
  targets: np.ndarray,
  splits: kernels.Splits,
  regression: Regression,
  *,
  dtype=jnp.float32,
) -> CrossValidated:
  """Pearson r of held-out predictions, per split and neuroid.

  Args:
    features: (n_stimuli, n_features) model features, finite.
    targets: (n_stimuli, n_neuroids) repetition-averaged responses, rows in
      the same stimulus order as ``features``.
    splits: train and test indices, (n_splits, n_train) and (n_splits, n_test).
    regression: the map to fit.
    dtype: compute dtype.

  Returns:
    CrossValidated. In ``r``: NaN where a neuroid is constant over a test set
    (it has no correlation) or where a prediction is not finite; a finite
    prediction constant over a test set (no information) scores 0.
  """
  dtype = resolve_dtype(dtype)
  n_stimuli, n_features = features.shape
  n_splits, n_train = splits.train.shape
  n_components = 0
  if regression.kind == "pls":
    n_components = regression.components_for(n_features, n_train)
  train, test = jnp.asarray(splits.train), jnp.asarray(splits.test)
  Y = jnp.asarray(targets, dtype)
  alphas = jnp.asarray(regression.alphas, dtype)
  kind = regression.kind
  if kind == "ridge" and regression.selection == "gcv":
    kind = "ridge_gcv"
  solver = regression_lib.resolve_solver(regression.solver)
  static = dict(kind=kind, n_components=n_components)
  if kind in ("ridge_gcv", "pls") and n_features <= n_stimuli:
    r = _moment_split_correlations(
      jnp.asarray(features, dtype),
      Y,
      train,
      test,
      alphas,
      solver=solver,
      kind=kind,
      n_components=n_components,
    )
  elif n_features > n_stimuli:
    # Wider than the stimulus set: every split needs only inner products of
    # stimuli, so one Gram matrix serves all splits (see kernels.center_gram).
    gram = stimulus_gram(features, dtype=dtype)
    r = _gram_split_correlations(gram, Y, train, test, alphas, **static)
  else:
    per_split = (n_train + splits.test.shape[1]) * n_features * dtype.itemsize * 3
    batch_size = int(max(1, min(n_splits, MEMORY_BUDGET // max(per_split, 1))))
    r = _split_correlations(
      jnp.asarray(features, dtype),
      Y,
      train,
      test,
      alphas,
      batch_size=batch_size,
      solver=solver,
      **static,
    )
  r, alpha, predictions = r
  return CrossValidated(
    r=np.asarray(r, np.float64),
    alpha=None if regression.kind == "pls" else np.asarray(alpha, np.float64),
    predictions=np.asarray(predictions),
    n_components=n_components,
  )


GRAM_BLOCK = 8192  # feature columns per Gram update


def stimulus_gram(features: np.ndarray, *, dtype=jnp.float32) -> jax.Array:
  """Inner products of centred stimuli, accumulated over feature blocks.

  Args:
    features: (n_stimuli, n_features) features.
    dtype: compute dtype.

  Returns:
    (n_stimuli, n_stimuli) ``Xc Xc^T`` with ``Xc`` centred on all stimuli;
    centring first keeps float32 accurate for activations with large offsets.
    Memory beyond the features is one block of GRAM_BLOCK columns.
  """
  dtype = resolve_dtype(dtype)
  n_stimuli, n_features = features.shape
  mean = features.mean(axis=0, dtype=np.float64)
  gram = jnp.zeros((n_stimuli, n_stimuli), dtype)
  for start in range(0, n_features, GRAM_BLOCK):
    block = np.zeros((n_stimuli, GRAM_BLOCK), dtype)  # zero columns add nothing
    stop = min(start + GRAM_BLOCK, n_features)
    block[:, : stop - start] = features[:, start:stop] - mean[start:stop]
    gram = _add_gram(gram, block)
  return gram


@jax.jit
def _add_gram(gram, block):
  with jax.default_matmul_precision("highest"):
    return gram + block @ block.T


def _correlate(pred, y_test):
  """Pearson r per neuroid; a finite, constant prediction of a varying neuroid
  is 0, a non-finite prediction NaN (the caller turns that into an error)."""
  r = kernels.pearson_r(pred, y_test)
  target_varies = jnp.ptp(y_test, axis=0) > 0
  finite = jnp.all(jnp.isfinite(pred), axis=0)
  constant = finite & (jnp.ptp(jnp.where(finite, pred, 0), axis=0) == 0)
  return jnp.where(constant & target_varies, 0.0, jnp.where(finite, r, jnp.nan))


@functools.partial(
  jax.jit, static_argnames=("kind", "n_components", "batch_size", "solver")
)
def _split_correlations(
  X, Y, train, test, alphas, *, kind, n_components, batch_size, solver="eigh"
):
  def one_split(indices):
    tr, te = indices
    if kind == "pls":
      pred = kernels.pls_fit_predict(X[tr], Y[tr], X[te], n_components=n_components)
      alpha = jnp.zeros(Y.shape[1], Y.dtype)
    else:
      pred, alpha = kernels.ridge_fit_predict(
        X[tr], Y[tr], X[te], alphas, solver=solver
      )
    return _correlate(pred, Y[te]), alpha, pred

  return jax.lax.map(one_split, (train, test), batch_size=batch_size)


@functools.partial(jax.jit, static_argnames=("kind", "n_components"))
def _gram_split_correlations(gram, Y, train, test, alphas, *, kind, n_components):
  def one_split(tr, te):
    K_train, K_test = kernels.center_gram(gram, tr, te)
    if kind == "pls":
      # n_components was already limited by the layer's width (components_for)
      pred = kernels.pls_fit_predict_gram(
        K_train, K_test, Y[tr], n_components=n_components
      )
      alpha = jnp.zeros(Y.shape[1], Y.dtype)
    elif kind == "ridge_gcv":
      pred, alpha = kernels.ridge_gcv_fit_predict_gram(K_train, K_test, Y[tr], alphas)
    else:
      pred, alpha = kernels.ridge_fit_predict_gram(K_train, K_test, Y[tr], alphas)
    return _correlate(pred, Y[te]), alpha, pred

  return jax.vmap(one_split)(train, test)


@functools.partial(jax.jit, static_argnames=("solver", "kind", "n_components"))
def _moment_split_correlations(
  X, Y, train, test, alphas, *, solver="eigh", kind="ridge_gcv", n_components=0
):
  """GCV ridge or PLS on every split from whole-data moments, downdated.

  With X and Y centred on all stimuli, a split's training moments are the
  whole-data moments minus its test rows' (when train and test together
  cover the stimuli), re-centred on the training mean m = -sum(test) / n_train:
    Xc^T Xc = S - Xte^T Xte - n_train m m^T,   S = X^T X   (p, p)
  so each split costs O(n_test p^2) before its eigendecomposition instead of
  O(n_train p^2).
  """
  n_stimuli = X.shape[0]
  n_train, n_test = train.shape[1], test.shape[1]
  downdate = n_train + n_test == n_stimuli  # static
  y_all = jnp.mean(Y, axis=0)
  Xg, Yg = X - jnp.mean(X, axis=0), Y - y_all
  with jax.default_matmul_precision("highest"):
    S, XY, YY = Xg.T @ Xg, Xg.T @ Yg, jnp.sum(Yg * Yg, axis=0)

  def one_split(indices):
    tr, te = indices
    Xte, Yte = Xg[te], Yg[te]
    with jax.default_matmul_precision("highest"):
      if downdate:
        x_sum, y_sum = -jnp.sum(Xte, axis=0), -jnp.sum(Yte, axis=0)
        gram, cross = S - Xte.T @ Xte, XY - Xte.T @ Yte
        squares = YY - jnp.sum(Yte * Yte, axis=0)
      else:
        Xtr, Ytr = Xg[tr], Yg[tr]
        x_sum, y_sum = jnp.sum(Xtr, axis=0), jnp.sum(Ytr, axis=0)
        gram, cross, squares = Xtr.T @ Xtr, Xtr.T @ Ytr, jnp.sum(Ytr * Ytr, axis=0)
      m, my = x_sum / n_train, y_sum / n_train
      gram = gram - n_train * jnp.outer(m, m)
      cross = cross - n_train * jnp.outer(m, my)
      squares = squares - n_train * my * my
    if kind == "pls":
      predictions = regression_lib.pls_from_moments(
        gram, cross, Xte - m, y_all + my, n_components=n_components
      )
      alpha = jnp.zeros(Y.shape[1], Y.dtype)
    else:
      predictions, alpha = kernels.ridge_gcv_from_moments(
        gram, cross, squares, n_train, Xte - m, y_all + my, alphas, solver=solver
      )
    return _correlate(predictions, Y[te]), alpha, predictions

  return jax.lax.map(one_split, (train, test))


def split_half_ceiling(
  trials: np.ndarray, masks: jax.Array, *, dtype=jnp.float32
) -> np.ndarray:
  """Spearman-Brown split-half reliability per split and neuroid.

  Args:
    trials: (n_reps, n_stimuli, n_neuroids) single trials, NaN where a
      stimulus has no trial in a repetition slot.
    masks: (n_splits, n_reps) bool, True for the first half of each halving
      (``kernels.split_half_masks``).
    dtype: compute dtype.

  Returns:
    (n_splits, n_neuroids) corrected split-half correlations.
  """
  dtype = resolve_dtype(dtype)
  values = kernels.split_half_ceiling(jnp.asarray(trials, dtype), masks)
  return np.asarray(values, np.float64)
