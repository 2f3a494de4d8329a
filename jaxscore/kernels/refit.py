"""Full-refit bootstrap: the score's variance from the fit, not the test set.

Resample b draws, within every split, the split's training stimuli with
replacement; drawing stimulus i k times is ridge on that row repeated k
times, i.e. ridge with count weights c_i (sum n_train). From the features
and responses centred on all stimuli (Xg, Yg), the split's weighted moments,
re-centred on the weighted training mean m = sum_i c_i x_i / n_train, are
  G = Xtr^T diag(c) Xtr - n m m^T        (p, p)
  C = Xtr^T diag(c) Ytr - n m my^T       (p, T)
  s = c^T (Ytr * Ytr) - n my^2           (T,)
and the ridge is refitted from them by ``ridge_gcv_from_moments``: GCV over
the same alphas as the score, on the repeated rows (n = n_train, dof from
the weighted Gram's spectrum). The penalty is chosen again in every resample
because the choice is part of the fit whose variance is measured, and with
one eigendecomposition per fit it costs O(n_alphas p T) more, nothing next to
the O(n_train p^2) Gram. (Pass a single alpha to hold it fixed.) The refit
predicts the split's unchanged test stimuli; the resample's score is the
median over neuroids (drawn too when ``resample_neuroids``) of Pearson r,
averaged over splits, as the score itself.

Draws: resample b uses ``fold_in(key, b)`` only. Its training counts are
stream 3 of that key (see ``bootstrap``); its neuroid draw is stream 1, the
same neuroids that ``test_set_bootstrap`` and ``ceiling_bootstrap`` draw with
the same key. Resamples are computed ``chunk_size`` at a time (``vmap``),
chunk after chunk, and the chunks spread over all local devices
(``shard_resamples``). The same key, chunk size and device count give
bit-identical scores on one backend.

Axis legend: n_boot resamples, n_splits splits, n_train / n_test stimuli of a
split, n_features features, n_neuroids neuroids, n_alphas penalties.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxscore.kernels import bootstrap as bootstrap_lib
from jaxscore.kernels.correlation import pearson_r
from jaxscore.kernels.regression import resolve_solver, ridge_gcv_from_moments

_TRAIN_STIMULI = 3  # key stream of the training counts (0-2: see bootstrap)
MEMORY_BUDGET = 1 << 30  # bytes of per-resample work arrays held at once


def draw_refit(index, *, key, n_splits, n_train, n_neuroids, resample_neuroids=False):
  """The draw of refit resample ``index``, as ``refit_bootstrap`` makes it.

  Returns:
    ResampleDraw with counts (n_splits, n_train) over each split's training
    stimuli and neuroids (n_neuroids,).
  """
  resample_key = jax.random.fold_in(key, index)
  stimuli = bootstrap_lib._uniform_indices(
    resample_key, _TRAIN_STIMULI, (n_splits, n_train), n_train
  )
  neuroids = bootstrap_lib._neuroid_draw(resample_key, n_neuroids, resample_neuroids)
  return bootstrap_lib.ResampleDraw(bootstrap_lib._counts(stimuli, n_train), neuroids)


def _split_r(counts, X, Y, y_all, tr, te, alphas, solver):
  """Pearson r (n_neuroids,) of one split's weighted refit on its test set."""
  n_train = tr.shape[0]
  Xtr, Ytr = X[tr], Y[tr]  # (n_train, p), (n_train, T)
  w = counts.astype(X.dtype)  # (n_train,)
  with jax.default_matmul_precision("highest"):
    m, my = (w @ Xtr) / n_train, (w @ Ytr) / n_train  # (p,), (T,)
    weighted = w[:, None] * Xtr  # (n_train, p)
    gram = weighted.T @ Xtr - n_train * jnp.outer(m, m)  # (p, p)
    cross = weighted.T @ Ytr - n_train * jnp.outer(m, my)  # (p, T)
    squares = w @ (Ytr * Ytr) - n_train * my * my  # (T,)
  result = ridge_gcv_from_moments(
    gram, cross, squares, n_train, X[te] - m, y_all + my, alphas, solver=solver
  )
  prediction, target = result.predictions, Y[te] + y_all  # (n_test, T) each
  r = pearson_r(prediction, target)
  # As in scoring: a finite prediction constant over the test set scores 0.
  constant = jnp.ptp(prediction, axis=0) == 0
  return jnp.where(constant & (jnp.ptp(target, axis=0) > 0), 0.0, r)


@functools.partial(
  jax.jit, static_argnames=("n_chunks", "chunk_size", "resample_neuroids", "solver")
)
def _refit_distribution(
  X, Y, train, test, alphas, key, *, n_chunks, chunk_size, resample_neuroids, solver
):
  n_splits, n_train = train.shape
  n_neuroids = Y.shape[1]
  y_all = jnp.mean(Y, axis=0)
  Xg, Yg = X - jnp.mean(X, axis=0), Y - y_all  # centred on all stimuli

  def one_resample(index, ops):
    Xg, Yg, y_all, train, test, alphas, key = ops
    draw = draw_refit(
      index,
      key=key,
      n_splits=n_splits,
      n_train=n_train,
      n_neuroids=n_neuroids,
      resample_neuroids=resample_neuroids,
    )

    def one_split(args):
      counts, tr, te = args
      return _split_r(counts, Xg, Yg, y_all, tr, te, alphas, solver)

    r = jax.lax.map(one_split, (draw.counts, train, test))  # (S, T)
    return bootstrap_lib._aggregate(r, draw.neuroids)

  def run_chunks(local_indices, *ops):
    chunks = local_indices.reshape(n_chunks, chunk_size)
    batch = jax.vmap(one_resample, in_axes=(0, None))
    return jax.lax.map(lambda chunk: batch(chunk, ops), chunks).reshape(-1)

  n_devices = len(bootstrap_lib.resample_devices())
  indices = jnp.arange(n_chunks * chunk_size * n_devices, dtype=jnp.uint32)
  operands = (Xg, Yg, y_all, train, test, alphas, key)
  return bootstrap_lib.shard_resamples(run_chunks, indices, *operands)


def default_chunk_size(n_train, n_features, n_neuroids, itemsize=4) -> int:
  """Resamples per chunk that keep their work arrays within MEMORY_BUDGET."""
  per_resample = itemsize * (
    4 * n_features * n_features  # Gram, eigenvectors and workspace
    + 2 * n_train * n_features  # gathered and weighted training rows
    + 4 * n_features * n_neuroids
  )
  return int(max(1, min(64, MEMORY_BUDGET // per_resample)))


def _check_refit_inputs(features, targets, train, test):
  features, targets = jnp.asarray(features), jnp.asarray(targets)
  train, test = jnp.asarray(train), jnp.asarray(test)
  if features.ndim != 2 or targets.ndim != 2:
    raise ValueError(
      "features and targets must be 2-D, (n_stimuli, n_features) and "
      f"(n_stimuli, n_neuroids), got shapes {tuple(features.shape)} and "
      f"{tuple(targets.shape)}."
    )
  if targets.shape[0] != features.shape[0]:
    raise ValueError(
      f"targets must have one row per stimulus, {features.shape[0]} as in "
      f"features, got {targets.shape[0]}."
    )
  if train.ndim != 2 or test.ndim != 2 or train.shape[0] != test.shape[0]:
    raise ValueError(
      "train and test must be (n_splits, n_train) and (n_splits, n_test) "
      f"index arrays, got shapes {tuple(train.shape)} and {tuple(test.shape)}."
    )
  if features.shape[1] > train.shape[1]:
    # NOTE: wide layers wait on a dual (stimulus Gram) form of the weighted
    # fit, K_w = C^1/2 K C^1/2; until then they are refused here.
    raise ValueError(
      f"refit_bootstrap needs n_features <= n_train, got {features.shape[1]} "
      f"features and {train.shape[1]} training stimuli; reduce the layer "
      "(e.g. PCA) or use the test-set bootstrap."
    )
  if test.shape[1] < 2:
    raise ValueError(f"each split needs at least 2 test stimuli, got {test.shape[1]}.")
  bootstrap_lib._check_finite(features, "features", "the fit would be NaN")
  bootstrap_lib._check_finite(targets, "targets", "the fit would be NaN")
  dtype = bootstrap_lib._float_dtype(features, targets)
  return features.astype(dtype), targets.astype(dtype), train, test


def refit_bootstrap(
  features,
  targets,
  train,
  test,
  alphas,
  *,
  n_boot: int,
  key,
  resample_neuroids: bool = False,
  chunk_size: int | None = None,
  solver: str = "auto",
) -> jax.Array:
  """Bootstrap distribution of the GCV-ridge score over refits (see above).

  Args:
    features: (n_stimuli, n_features) model features, finite; n_features at
      most n_train.
    targets: (n_stimuli, n_neuroids) repetition-averaged responses.
    train: (n_splits, n_train) training indices of every split.
    test: (n_splits, n_test) test indices of every split.
    alphas: (n_alphas,) ridge penalties; GCV chooses one per neuroid in every
      refit.
    n_boot: number of resamples.
    key: a ``jax.random`` key; resample b uses ``fold_in(key, b)``.
    resample_neuroids: also resample neuroids (the same draw as the test-set
      bootstrap with this key).
    chunk_size: resamples computed together; default from MEMORY_BUDGET.
      Changing it may change the last bits of the scores.
    solver: ``"eigh"``, ``"cholesky"`` or ``"auto"`` (``regression.SOLVERS``).

  Returns:
    (n_boot,) scores: per resample, the mean over splits of the median over
    neuroids of Pearson r between the refit's test predictions and the
    responses.
  """
  features, targets, train, test = _check_refit_inputs(features, targets, train, test)
  bootstrap_lib._check_key(key)
  n_train, n_features = train.shape[1], features.shape[1]
  if chunk_size is None:
    chunk_size = default_chunk_size(
      n_train, n_features, targets.shape[1], features.dtype.itemsize
    )
  for name, value in (("n_boot", n_boot), ("chunk_size", chunk_size)):
    if not isinstance(value, int | np.integer) or value < 1:
      raise ValueError(f"{name} must be a positive integer, got {value!r}.")
  chunk_size = int(min(chunk_size, n_boot))
  n_devices = len(bootstrap_lib.resample_devices())
  n_chunks = -(-n_boot // (chunk_size * n_devices))
  alphas = jnp.asarray(alphas, features.dtype)
  scores = _refit_distribution(
    features,
    targets,
    train,
    test,
    alphas,
    key,
    n_chunks=n_chunks,
    chunk_size=chunk_size,
    resample_neuroids=bool(resample_neuroids),
    solver=resolve_solver(solver),
  )
  return bootstrap_lib.gather(scores)[:n_boot]
