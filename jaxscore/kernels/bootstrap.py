"""Bootstrap distributions of the score and of the ceiling, as weighted moments.

A resample draws stimuli (and, hierarchically, neuroids) with replacement.
Drawing stimulus i k times is the same as giving it weight k, so a resample is
a vector of multinomial counts, and every moment a correlation needs is one
matrix product of the counts with a precomputed stack of per-stimulus terms.
Shapes stay static: resamples are drawn a chunk at a time (``vmap``), computed
a fixed block at a time (``lax.map`` over blocks of a ``vmap``), chunk after
chunk (``lax.map``), and the chunks are spread over all local devices.

Draws: resample b uses ``fold_in(key, b)`` and nothing else, so its draw does
not depend on the chunk size, the number of resamples or the device count.
Draw j of stream s of that resample is the Threefry-2x32 hash of the counter
pair (s, j) under the resample's key, mapped to [0, n) by Lemire's
multiply-shift (bias below n / 2^32). Stream 0 draws the score's test stimuli,
stream 1 the neuroids, stream 2 the ceiling's stimuli. Hence the same ``key``
given to ``test_set_bootstrap`` and ``ceiling_bootstrap`` resamples the same
neuroids in both (one neuroid population for the ceiled score) while their
stimulus draws are independent. Hashing counters directly (instead of
``jax.random.randint`` on split keys) halves the compile time of the kernels.

Axis legend: n_boot resamples, n_splits cross-validation splits, n_test test
stimuli of a split, n_neuroids recorded neuroids, n_reps repetition slots,
n_stimuli stimuli of the ceiling, n_halvings split-half halvings.

References:
  Efron & Tibshirani (1993), An Introduction to the Bootstrap, ch. 6, 14, 16.
  Davison & Hinkley (1997), Bootstrap Methods and their Application, ch. 3-5.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.extend.random import threefry_2x32
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxscore.kernels.ceiling import _half_mean, spearman_brown
from jaxscore.kernels.correlation import _centre
from jaxscore.kernels.normalize import get_normalization

DEFAULT_CHUNK_SIZE = 1024  # resamples drawn per step; a multiple of the block
RESAMPLE_BLOCK = 64  # resamples computed together; fixed, so bits never vary
_TEST_STIMULI, _NEUROIDS, _CEILING_STIMULI = 0, 1, 2  # key streams, see above
_HIGHEST = jax.lax.Precision.HIGHEST  # no TF32 passes on GPUs (pitfalls.md)


class ResampleDraw(NamedTuple):
  """One resample's draw.

  Attributes:
    counts: (..., n) int32 multinomial counts: how often each stimulus was
      drawn; every row sums to its n.
    neuroids: (n_neuroids,) int32 indices of the drawn neuroids
      (``arange(n_neuroids)`` when neuroids are not resampled).
  """

  counts: jax.Array
  neuroids: jax.Array


# ---------------------------------------------------------------------------
# Draws


def _mulhi(bits, n):
  """floor(bits * n / 2^32) for uint32 bits and 0 < n < 2^32, in uint32 words."""
  n = jnp.uint32(n)
  bits_lo, bits_hi = bits & 0xFFFF, bits >> 16
  n_lo, n_hi = n & 0xFFFF, n >> 16
  lo_lo, lo_hi, hi_lo = bits_lo * n_lo, bits_lo * n_hi, bits_hi * n_lo
  middle = (lo_lo >> 16) + (lo_hi & 0xFFFF) + (hi_lo & 0xFFFF)
  return bits_hi * n_hi + (lo_hi >> 16) + (hi_lo >> 16) + (middle >> 16)


def _uniform_indices(resample_key, stream, shape, n):
  """Integers uniform in [0, n), one per counter (stream, j) of ``shape``."""
  size = int(np.prod(shape))
  words = jnp.concatenate(
    [jnp.full(size, stream, jnp.uint32), jnp.arange(size, dtype=jnp.uint32)]
  )  # threefry_2x32 pairs word j with word size + j
  bits = threefry_2x32(jax.random.key_data(resample_key), words)[:size]
  return _mulhi(bits, n).astype(jnp.int32).reshape(shape)


def _counts(indices, n):
  """How often each of n items occurs in each row of ``indices``: (rows, n)."""
  return jax.vmap(lambda row: jnp.zeros(n, jnp.int32).at[row].add(1))(indices)


def _neuroid_draw(resample_key, n_neuroids, resample_neuroids):
  if not resample_neuroids:
    return jnp.arange(n_neuroids, dtype=jnp.int32)
  return _uniform_indices(resample_key, _NEUROIDS, (n_neuroids,), n_neuroids)


def _check_key(key):
  data = jax.random.key_data(key)
  if data.shape[-1:] != (2,):
    raise ValueError(
      "key must be a threefry2x32 key, e.g. jax.random.key(seed), got one with "
      f"{data.shape[-1]} words of key data."
    )


def draw_test_set(
  index, *, key, n_splits, n_test, n_neuroids, resample_neuroids=False
) -> ResampleDraw:
  """The draw of test-set resample ``index``, as ``test_set_bootstrap`` makes it.

  Every split's test stimuli are drawn independently (a stratified bootstrap,
  one stratum per split); the neuroid draw is shared by all splits.

  Args:
    index: the resample's index b (an integer or a traced scalar).
    key: the key given to the bootstrap.
    n_splits, n_test, n_neuroids: the shape of the predictions.
    resample_neuroids: whether neuroids are drawn too.

  Returns:
    counts (n_splits, n_test) and neuroids (n_neuroids,).
  """
  resample_key = jax.random.fold_in(key, index)
  stimuli = _uniform_indices(resample_key, _TEST_STIMULI, (n_splits, n_test), n_test)
  neuroids = _neuroid_draw(resample_key, n_neuroids, resample_neuroids)
  return ResampleDraw(_counts(stimuli, n_test), neuroids)


def draw_ceiling(
  index, *, key, n_stimuli, n_neuroids, resample_neuroids=False
) -> ResampleDraw:
  """The draw of ceiling resample ``index``, as ``ceiling_bootstrap`` makes it.

  One stimulus draw is shared by every halving; the neuroid draw equals that
  of ``draw_test_set`` with the same key and index.

  Returns:
    counts (n_stimuli,) and neuroids (n_neuroids,).
  """
  resample_key = jax.random.fold_in(key, index)
  stimuli = _uniform_indices(resample_key, _CEILING_STIMULI, (1, n_stimuli), n_stimuli)
  neuroids = _neuroid_draw(resample_key, n_neuroids, resample_neuroids)
  return ResampleDraw(_counts(stimuli, n_stimuli)[0], neuroids)


# ---------------------------------------------------------------------------
# Chunks and devices


def resample_devices() -> list:
  """The devices resamples are spread over: every device of every process.

  In one process these are its local devices. After
  ``jax.distributed.initialize`` they are all hosts' devices, and each
  process computes the blocks of indices that fall on its own devices.
  """
  return jax.devices()


def gather(samples):
  """``samples`` whole on every process (a no-op in a single process).

  A result sharded over several processes' devices is only partly held by
  each; ``process_allgather`` assembles the whole of it on every host.
  """
  if jax.process_count() == 1:
    return samples
  return jnp.asarray(multihost_utils.process_allgather(samples, tiled=True))


def shard_resamples(fn, indices, *operands, devices=None):
  """Runs ``fn`` on each device's share of the resample indices.

  Args:
    fn: ``fn(indices, *operands) -> pytree`` of arrays with a leading axis as
      long as ``indices``; it is called once per device with that device's
      contiguous block of indices.
    indices: (n,) resample indices; n must be a multiple of the device count.
    *operands: arrays every device needs whole (replicated).
    devices: devices of the 1-D mesh; default ``resample_devices()``.

  Returns:
    ``fn``'s pytree over all n indices, sharded along the leading axis with a
    ``NamedSharding`` over the mesh axis ``"resamples"`` (across processes
    after ``jax.distributed.initialize``: ``gather`` it). With one device
    this is ``fn(indices, *operands)``. Because a resample's draw depends
    only on its index, the numbers do not depend on the device count.
  """
  devices = resample_devices() if devices is None else list(devices)
  if len(devices) == 1:
    return fn(indices, *operands)
  if indices.shape[0] % len(devices):
    raise ValueError(
      f"indices must split evenly over {len(devices)} devices, got "
      f"{indices.shape[0]} of them."
    )
  mesh = Mesh(np.asarray(devices), ("resamples",))
  split, whole = PartitionSpec("resamples"), PartitionSpec()
  indices = jax.lax.with_sharding_constraint(indices, NamedSharding(mesh, split))
  return jax.shard_map(
    fn,
    mesh=mesh,
    in_specs=(split, *(whole for _ in operands)),
    out_specs=split,
  )(indices, *operands)


def _layout(n_boot, chunk_size):
  """Static (chunks per device, chunk size) for n_boot resamples.

  The chunk size is rounded up to a multiple of RESAMPLE_BLOCK, at least two
  blocks (see ``_map_resamples``), and the index range padded to a multiple of
  chunk size x devices; the padding's resamples are computed and dropped.
  n_boot values with the same layout share one compiled kernel.
  """
  for name, value in (("n_boot", n_boot), ("chunk_size", chunk_size)):
    if not isinstance(value, int | np.integer) or value < 1:
      raise ValueError(f"{name} must be a positive integer, got {value!r}.")
  n_devices = len(resample_devices())
  n_blocks = max(2, -(-int(min(chunk_size, n_boot)) // RESAMPLE_BLOCK))
  chunk_size = n_blocks * RESAMPLE_BLOCK
  return -(-n_boot // (chunk_size * n_devices)), chunk_size


def _map_resamples(draw, compute, operands, *, n_chunks, chunk_size):
  """``compute(draw(b, *ops), *ops)`` for every padded index b, on axis 0.

  Each device runs its ``n_chunks`` chunks one after the other (``lax.map``).
  A chunk draws all its resamples at once (``vmap``; integer work, exact),
  then computes them RESAMPLE_BLOCK at a time (``lax.map`` over blocks of a
  ``vmap``). XLA may round a matmul or a fused loop differently for arrays of
  different lengths, so the floating-point work always has the one block
  shape, and block j always holds resamples j * RESAMPLE_BLOCK onwards: every
  resample gets the same bits whatever the chunk size or device count.
  XLA inlines a loop of one step, and a matmul outside any loop ran with
  other rounding here (jax 0.10, CPU): hence at least two blocks per chunk.
  """
  n_devices = len(resample_devices())
  indices = jnp.arange(n_chunks * chunk_size * n_devices, dtype=jnp.uint32)
  not_mapped = tuple(None for _ in operands)
  draw_all = jax.vmap(draw, in_axes=(0, *not_mapped))
  compute_block = jax.vmap(compute, in_axes=(0, *not_mapped))

  def blocks(tree):
    return jax.tree.map(lambda x: x.reshape(-1, RESAMPLE_BLOCK, *x.shape[1:]), tree)

  def one_chunk(chunk, ops):
    draws = blocks(draw_all(chunk, *ops))
    return jax.lax.map(lambda block: compute_block(block, *ops), draws)

  def run_chunks(local_indices, *ops):
    chunks = local_indices.reshape(n_chunks, chunk_size)
    out = jax.lax.map(lambda chunk: one_chunk(chunk, ops), chunks)
    return jax.tree.map(lambda x: x.reshape(-1, *x.shape[3:]), out)

  return shard_resamples(run_chunks, indices, *operands)


def _check_finite(array, name, why, *, allow_nan=False):
  """Refuses NaN (unless allowed) or infinite values in concrete input."""
  if isinstance(array, jax.core.Tracer):
    return  # inside the caller's jit: the caller validates
  bad = jnp.isinf(array) if allow_nan else ~jnp.isfinite(array)
  if bool(jnp.any(bad)):
    kind = "infinite" if allow_nan else "NaN or infinite"
    raise ValueError(
      f"{name} has {int(jnp.sum(bad))} {kind} values; {why}. Drop or fix them "
      "before bootstrapping."
    )


def _float_dtype(*arrays):
  dtype = jnp.result_type(*arrays)
  return dtype if jnp.issubdtype(dtype, jnp.floating) else jnp.result_type(float)


def _aggregate(values, neuroids):
  """Median over the drawn neuroids, then mean over splits: (..., S, T) -> (...)."""
  return jnp.mean(jnp.nanmedian(values[..., neuroids], axis=-1), axis=-1)


# ---------------------------------------------------------------------------
# Test-set bootstrap
#
# Per split s, with counts c_i (sum n) over its test stimuli and x, y a
# neuroid's predictions and responses centred on the split's full test set:
#   E_c[z] = sum_i c_i z_i / n    (one matmul: counts (S, t) x stack (S, t, K T))
#   cov = E_c[x y] - E_c[x] E_c[y],  var = E_c[z z] - E_c[z]^2
#   r = cov / (sqrt(var_x) sqrt(var_y))
# Centring first (shift by the first stimulus, an exact subtraction for
# values within a factor 2 of each other, as on an offset of 1e3-1e6 times
# the spread, then subtract the mean) leaves E_c[z] of the order of the
# spread / sqrt(n), so var loses no float32 accuracy to cancellation. A
# variance below n eps E_c[z z] is rounding of an exactly constant resample
# and counts as 0. As in the score itself: a constant response has no
# correlation (NaN, dropped by the median); a constant prediction of a
# varying response scores 0.
# Stack layout along K, for M prediction sets: y, yy, x_1..M, xx_1..M, xy_1..M.


def _check_test_set(predictions, targets):
  """Validates shapes; returns predictions (M, S, t, T), targets, dtype."""
  predictions, targets = jnp.asarray(predictions), jnp.asarray(targets)
  if targets.ndim != 3:
    raise ValueError(
      "targets must be a 3-D array of shape (n_splits, n_test, n_neuroids), got "
      f"shape {tuple(targets.shape)}."
    )
  if predictions.shape[-3:] != targets.shape:
    raise ValueError(
      f"predictions must have the shape of targets, {tuple(targets.shape)}, got "
      f"{tuple(predictions.shape)}."
    )
  if targets.shape[1] < 2:
    raise ValueError(
      f"each split needs at least 2 test stimuli, got {targets.shape[1]}."
    )
  _check_finite(predictions, "predictions", "a NaN prediction would score 0")
  _check_finite(targets, "targets", "a NaN response would drop its neuroid")
  dtype = _float_dtype(predictions, targets)
  return predictions.astype(dtype), targets.astype(dtype), dtype


def _centre_test(z):
  """Centres (..., n_test, n_neuroids) on the mean over the test stimuli."""
  z = z - z[..., :1, :]
  return z - jnp.mean(z, axis=-2, keepdims=True)


def _test_set_stack(predictions, targets):
  """Per-stimulus moment terms, (S, t, K, T) with K = 2 + 3 M (see above)."""
  x, y = _centre_test(predictions), _centre_test(targets)  # (M,S,t,T), (S,t,T)
  terms = [y[None], (y * y)[None], x, x * x, x * y[None]]
  return jnp.moveaxis(jnp.concatenate(terms, axis=0), 0, 2)


def _pearson(mx, my, mxx, myy, mxy, *, n_terms, constant_x):
  """r from weighted means of centred x, y, xx, yy, xy (see above).

  Args:
    mx, my, mxx, myy, mxy: broadcastable arrays of weighted means.
    n_terms: number of terms summed into each mean; it bounds their rounding.
    constant_x: r where x is constant and y varies: 0 for a prediction, NaN
      for a half of the ceiling. A constant y always gives NaN.
  """
  tol = n_terms * jnp.finfo(mx.dtype).eps
  var_x, var_y = mxx - mx * mx, myy - my * my
  x_varies, y_varies = var_x > tol * mxx, var_y > tol * myy
  ok = x_varies & y_varies
  denominator = jnp.sqrt(jnp.where(ok, var_x, 1)) * jnp.sqrt(jnp.where(ok, var_y, 1))
  r = jnp.clip((mxy - mx * my) / denominator, -1, 1)
  r = jnp.where(ok, r, jnp.asarray(constant_x, r.dtype))
  return jnp.where(y_varies, r, jnp.nan)


def _test_set_r(sums, total, *, n_models, n_terms):
  """Pearson r per split and neuroid from count-weighted sums.

  Args:
    sums: (S, K, T) count-weighted sums of the stack's terms.
    total: (S,) the sum of each split's counts.
    n_models: M, the number of prediction sets in the stack.
    n_terms: n_test.

  Returns:
    (M, S, T) correlations.
  """
  mean = sums / total[:, None, None].astype(sums.dtype)  # (S, K, T)
  m = n_models
  r = _pearson(
    mean[:, 2 : 2 + m],  # (S, M, T)
    mean[:, :1],  # (S, 1, T)
    mean[:, 2 + m : 2 + 2 * m],
    mean[:, 1:2],
    mean[:, 2 + 2 * m :],
    n_terms=n_terms,
    constant_x=0,
  )
  return jnp.moveaxis(r, 1, 0)


def _test_set_sums(stack, counts):
  """Count-weighted sums (S, K, T) of the stack (S, t, K, T); counts (S, t)."""
  weights = counts.astype(stack.dtype)
  return jnp.einsum("st,stkn->skn", weights, stack, precision=_HIGHEST)


def _test_set_scores(sums, total, neuroids, *, n_models, n_test):
  """Scores (M,) of one draw from its sums (S, K, T) and count totals (S,)."""
  r = _test_set_r(sums, total, n_models=n_models, n_terms=n_test)  # (M, S, T)
  return _aggregate(r, neuroids)


@functools.partial(
  jax.jit, static_argnames=("n_chunks", "chunk_size", "resample_neuroids")
)
def _test_set_distribution(
  predictions, targets, key, *, n_chunks, chunk_size, resample_neuroids
):
  """(n_padded, M) scores of M prediction sets on the same resamples."""
  n_models, n_splits, n_test, n_neuroids = predictions.shape
  stack = _test_set_stack(predictions, targets)  # (S, t, K, T)

  def draw(index, stack, key):
    del stack
    return draw_test_set(
      index,
      key=key,
      n_splits=n_splits,
      n_test=n_test,
      n_neuroids=n_neuroids,
      resample_neuroids=resample_neuroids,
    )

  def compute(draw, stack, key):
    del key
    counts, neuroids = draw
    sums = _test_set_sums(stack, counts)
    return _test_set_scores(
      sums, counts.sum(-1), neuroids, n_models=n_models, n_test=n_test
    )

  return _map_resamples(
    draw, compute, (stack, key), n_chunks=n_chunks, chunk_size=chunk_size
  )


def test_set_bootstrap(
  predictions,
  targets,
  *,
  n_boot: int,
  key,
  resample_neuroids: bool = False,
  chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> jax.Array:
  """Bootstrap distribution of the score over test stimuli (and neuroids).

  Reuses each split's held-out predictions (no refit): resample b draws, per
  split, the test stimuli with replacement and, if ``resample_neuroids``, one
  set of neuroids shared by all splits; its score is Pearson r per neuroid on
  the drawn stimuli, median over the drawn neuroids, mean over splits.

  Args:
    predictions: (n_splits, n_test, n_neuroids) held-out predictions of each
      split.
    targets: (n_splits, n_test, n_neuroids) the measured (repetition-averaged)
      responses to the same test stimuli.
    n_boot: number of resamples.
    key: a ``jax.random`` key; resample b uses ``fold_in(key, b)``.
    resample_neuroids: also resample neuroids (hierarchical bootstrap).
    chunk_size: resamples drawn per step, rounded up to whole blocks of
      RESAMPLE_BLOCK (at least two); memory grows with it, results do not
      change.

  Returns:
    (n_boot,) scores in the floating dtype of the inputs.
  """
  n_chunks, chunk_size = _layout(n_boot, chunk_size)
  predictions, targets, _ = _check_test_set(predictions, targets)
  _check_key(key)
  scores = _test_set_distribution(
    predictions[None],
    targets,
    key,
    n_chunks=n_chunks,
    chunk_size=chunk_size,
    resample_neuroids=bool(resample_neuroids),
  )
  return gather(scores)[:n_boot, 0]


def paired_difference(
  predictions_a,
  predictions_b,
  targets,
  *,
  n_boot: int,
  key,
  resample_neuroids: bool = False,
  chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> jax.Array:
  """Bootstrap distribution of score(a) - score(b) on the same resamples.

  Both prediction sets come from the same splits; every resample draws the
  stimuli (and neuroids) once and scores both on that draw, which is the draw
  ``test_set_bootstrap`` makes with the same key. Pair it with
  ``intervals.bootstrap_p_value`` and an interval of the differences.

  Args:
    predictions_a, predictions_b: (n_splits, n_test, n_neuroids) held-out
      predictions of two models (or layers) on the same splits.
    targets: (n_splits, n_test, n_neuroids) measured responses.
    n_boot, key, resample_neuroids, chunk_size: as in ``test_set_bootstrap``.

  Returns:
    (n_boot,) differences score(a) - score(b).
  """
  n_chunks, chunk_size = _layout(n_boot, chunk_size)
  predictions_a, targets, dtype = _check_test_set(predictions_a, targets)
  predictions_b, _, _ = _check_test_set(predictions_b, targets)
  _check_key(key)
  predictions = jnp.stack([predictions_a, predictions_b.astype(dtype)])
  scores = _test_set_distribution(
    predictions,
    targets,
    key,
    n_chunks=n_chunks,
    chunk_size=chunk_size,
    resample_neuroids=bool(resample_neuroids),
  )
  scores = gather(scores)
  return scores[:n_boot, 0] - scores[:n_boot, 1]


@jax.jit
def _test_set_point(predictions, targets):
  n_splits, n_test, n_neuroids = targets.shape
  stack = _test_set_stack(predictions, targets)
  counts = jnp.ones((n_splits, n_test), jnp.int32)
  return _test_set_scores(
    _test_set_sums(stack, counts),
    counts.sum(-1),
    jnp.arange(n_neuroids),
    n_models=predictions.shape[0],
    n_test=n_test,
  )


def test_set_score(predictions, targets) -> jax.Array:
  """The score the bootstrap resamples: mean over splits of median_neuroids r.

  Args:
    predictions: (n_splits, n_test, n_neuroids) held-out predictions.
    targets: (n_splits, n_test, n_neuroids) measured responses.

  Returns:
    scalar; equals Brain-Score's raw score of these predictions (NaN r of
    constant neuroids dropped from the median, constant predictions r = 0).
  """
  predictions, targets, _ = _check_test_set(predictions, targets)
  return _test_set_point(predictions[None], targets)[0]


# Jackknife for the BCa acceleration (see intervals.acceleration). The test-set
# bootstrap resamples each split's test stimuli independently, one stratum per
# split, so the jackknife deletes one test stimulus of one split at a time
# (n_splits x n_test values); deleting stimulus i of split s changes only that
# split's median. Hierarchical resampling adds the neuroids as one more group:
# deleting neuroid j drops it from every split's median. Sums without stimulus
# i are the full sums minus stimulus i's terms, so no matmul is needed.


@functools.partial(jax.jit, static_argnames="resample_neuroids")
def _test_set_jackknife(predictions, targets, *, resample_neuroids):
  n_models, n_splits, n_test, n_neuroids = predictions.shape
  stack = _test_set_stack(predictions, targets)  # (S, t, K, T)
  full = jnp.sum(stack, axis=1)  # (S, K, T)
  total = jnp.full((n_splits,), n_test, stack.dtype)
  r = _test_set_r(full, total, n_models=n_models, n_terms=n_test)  # (M, S, T)
  medians = jnp.nanmedian(r, axis=-1)  # (M, S)

  def without_stimulus(i):  # medians with stimulus i of each split deleted
    r_i = _test_set_r(full - stack[:, i], total - 1, n_models=n_models, n_terms=n_test)
    return jnp.nanmedian(r_i, axis=-1)  # (M, S)

  deleted = jax.vmap(without_stimulus, out_axes=-1)(jnp.arange(n_test))  # (M,S,t)
  stimuli = jnp.mean(medians, -1)[:, None, None] + (deleted - medians[..., None]) / (
    n_splits
  )
  if not resample_neuroids:
    return (stimuli,)

  def without_neuroid(j):
    return jnp.mean(
      jnp.nanmedian(jnp.where(jnp.arange(n_neuroids) == j, jnp.nan, r), -1), -1
    )

  neuroids = jax.vmap(without_neuroid, out_axes=-1)(jnp.arange(n_neuroids))  # (M,T)
  return stimuli, neuroids


def jackknife_test_set(
  predictions, targets, *, resample_neuroids: bool = False
) -> tuple[jax.Array, ...]:
  """Leave-one-out values of the test-set score, for the BCa acceleration.

  Args:
    predictions: (n_splits, n_test, n_neuroids) held-out predictions.
    targets: (n_splits, n_test, n_neuroids) measured responses.
    resample_neuroids: as given to ``test_set_bootstrap``; adds the neuroid
      group.

  Returns:
    ``(stimuli,)`` or ``(stimuli, neuroids)``: stimuli (n_splits, n_test) is
    the score with test stimulus i of split s left out, neuroids (n_neuroids,)
    the score with neuroid j left out. Pass the tuple unchanged as
    ``jackknife_values`` of ``intervals.bca_interval``. For a paired
    difference, subtract two models' tuples element by element.
  """
  predictions, targets, _ = _check_test_set(predictions, targets)
  groups = _test_set_jackknife(
    predictions[None], targets, resample_neuroids=resample_neuroids
  )
  return tuple(g[0] for g in groups)


# ---------------------------------------------------------------------------
# Ceiling bootstrap
#
# The halvings of the repetitions stay fixed (masks); a resample draws STIMULI
# with replacement, one draw for all halvings. Repetitions are never
# resampled: a repetition drawn into both halves correlates with itself and
# makes pure noise look reliable (pitfalls.md). For halving h and neuroid n
# the half-means a, b and the mask m (both halves have a trial) are fixed, so
# with counts c_i over the stimuli, every weighted sum
#   sum_i c_i m_in {1, a, b, aa, bb, ab}_in
# is one matmul of the counts with an (n_stimuli, H 6 T) stack; a and b are
# centred on the stimuli of m beforehand (zero outside m). From the means the
# split-half r is computed as in the test-set bootstrap, corrected by
# Spearman-Brown, its median taken over the drawn neuroids and its mean over
# the halvings. With all counts 1 this is ``split_half_ceiling``.


def _check_ceiling(trials, masks):
  trials, masks = jnp.asarray(trials), jnp.asarray(masks)
  if trials.ndim != 3:
    raise ValueError(
      "trials must be a 3-D array of shape (n_reps, n_stimuli, n_neuroids), got "
      f"shape {tuple(trials.shape)}."
    )
  if masks.ndim != 2 or masks.shape[1] != trials.shape[0]:
    raise ValueError(
      f"masks must have shape (n_halvings, {trials.shape[0]}), one flag per "
      f"repetition slot, got {tuple(masks.shape)}."
    )
  if trials.shape[1] < 2:
    raise ValueError(f"trials needs at least 2 stimuli, got {trials.shape[1]}.")
  _check_finite(trials, "trials", "NaN marks a missing trial", allow_nan=True)
  return trials.astype(_float_dtype(trials)), masks.astype(bool)


def _ceiling_stack(trials, masks):
  """Per-stimulus terms (n_stimuli, H, 6, T): m, a, b, aa, bb, ab (see above)."""

  def one_halving(first_half):
    a, in_a = _half_mean(trials, first_half)  # (N, T) each
    b, in_b = _half_mean(trials, ~first_half)
    present = in_a & in_b
    a, b = _centre(a, present), _centre(b, present)  # 0 outside present
    return jnp.stack([present.astype(a.dtype), a, b, a * a, b * b, a * b])

  return jnp.moveaxis(jax.vmap(one_halving)(masks), 2, 0)


def _ceiling_values(sums, *, n_terms):
  """Spearman-Brown split-half r, (H, T), from weighted sums (H, 6, T)."""
  mean = sums[:, 1:] / jnp.maximum(sums[:, :1], 1)  # (H, 5, T)
  r = _pearson(*jnp.unstack(mean, axis=1), n_terms=n_terms, constant_x=jnp.nan)
  return spearman_brown(r)


def _ceiling_sums(stack, counts):
  """Count-weighted sums (H, 6, T) of the stack (N, H, 6, T); counts (N,)."""
  weights = counts.astype(stack.dtype)
  return jnp.einsum("i,ihkn->hkn", weights, stack, precision=_HIGHEST)


@functools.partial(
  jax.jit, static_argnames=("n_chunks", "chunk_size", "resample_neuroids")
)
def _ceiling_distribution(
  trials, masks, key, *, n_chunks, chunk_size, resample_neuroids
):
  _, n_stimuli, n_neuroids = trials.shape
  stack = _ceiling_stack(trials, masks)

  def draw(index, stack, key):
    del stack
    return draw_ceiling(
      index,
      key=key,
      n_stimuli=n_stimuli,
      n_neuroids=n_neuroids,
      resample_neuroids=resample_neuroids,
    )

  def compute(draw, stack, key):
    del key
    sums = _ceiling_sums(stack, draw.counts)
    return _aggregate(_ceiling_values(sums, n_terms=n_stimuli), draw.neuroids)

  return _map_resamples(
    draw, compute, (stack, key), n_chunks=n_chunks, chunk_size=chunk_size
  )


def ceiling_bootstrap(
  trials,
  masks,
  *,
  n_boot: int,
  key,
  resample_neuroids: bool = False,
  chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> jax.Array:
  """Bootstrap distribution of the split-half ceiling over stimuli (and neuroids).

  Args:
    trials: (n_reps, n_stimuli, n_neuroids) single trials, NaN where a
      stimulus has no trial in a repetition slot.
    masks: (n_halvings, n_reps) bool halvings of the repetitions (True: first
      half), e.g. ``split_half_masks``; fixed across resamples.
    n_boot: number of resamples.
    key: a ``jax.random`` key; resample b uses ``fold_in(key, b)``. The same
      key as the score's ``test_set_bootstrap`` draws the same neuroids.
    resample_neuroids: also resample neuroids (hierarchical bootstrap).
    chunk_size: as in ``test_set_bootstrap``.

  Returns:
    (n_boot,) ceilings: mean over halvings of the median over neuroids of the
    Spearman-Brown corrected split-half r, on the drawn stimuli.
  """
  n_chunks, chunk_size = _layout(n_boot, chunk_size)
  trials, masks = _check_ceiling(trials, masks)
  _check_key(key)
  samples = _ceiling_distribution(
    trials,
    masks,
    key,
    n_chunks=n_chunks,
    chunk_size=chunk_size,
    resample_neuroids=bool(resample_neuroids),
  )
  return gather(samples)[:n_boot]


@jax.jit
def _ceiling_point(trials, masks):
  stack = _ceiling_stack(trials, masks)
  sums = _ceiling_sums(stack, jnp.ones(trials.shape[1], jnp.int32))
  values = _ceiling_values(sums, n_terms=trials.shape[1])
  return _aggregate(values, jnp.arange(trials.shape[2]))


def ceiling_score(trials, masks) -> jax.Array:
  """The ceiling the bootstrap resamples, on all stimuli: a scalar.

  Equals the mean over halvings of the NaN-skipping median over neuroids of
  ``split_half_ceiling(trials, masks)``.
  """
  return _ceiling_point(*_check_ceiling(trials, masks))


@functools.partial(jax.jit, static_argnames="resample_neuroids")
def _ceiling_jackknife(trials, masks, *, resample_neuroids):
  _, n_stimuli, n_neuroids = trials.shape
  stack = _ceiling_stack(trials, masks)  # (N, H, 6, T)
  full = jnp.sum(stack, axis=0)  # (H, 6, T)
  everyone = jnp.arange(n_neuroids)

  def without_stimulus(terms):
    return _aggregate(_ceiling_values(full - terms, n_terms=n_stimuli), everyone)

  stimuli = jax.lax.map(without_stimulus, stack, batch_size=128)  # (N,)
  if not resample_neuroids:
    return (stimuli,)
  values = _ceiling_values(full, n_terms=n_stimuli)  # (H, T)

  def without_neuroid(j):
    return _aggregate(jnp.where(everyone == j, jnp.nan, values), everyone)

  return stimuli, jax.vmap(without_neuroid)(everyone)


def jackknife_ceiling(
  trials, masks, *, resample_neuroids: bool = False
) -> tuple[jax.Array, ...]:
  """Leave-one-out values of the ceiling, for the BCa acceleration.

  Returns:
    ``(stimuli,)`` or ``(stimuli, neuroids)``: the ceiling with stimulus i
    left out of every halving, (n_stimuli,), and with neuroid j left out,
    (n_neuroids,).
  """
  trials, masks = _check_ceiling(trials, masks)
  return _ceiling_jackknife(trials, masks, resample_neuroids=resample_neuroids)


# ---------------------------------------------------------------------------
# Ceiled score
#
# The ceiled score r^2 / c carries both uncertainties when resample b of the
# score is paired with resample b of the ceiling. Their stimulus draws are
# independent streams: that treats the score's and the ceiling's sampling
# errors over stimuli as independent, although both come from the same
# stimuli and neuroids. Positively correlated errors would partly cancel in
# the ratio, so the independent pairing errs on the wide side. Neuroids: with
# the same key both kernels draw the same neuroids, so the neuroid-level
# dependence (reliable neuroids are also the predictable ones) is kept.


def ceiled_bootstrap(
  score_samples, ceiling_samples, normalization: str = "r2_over_c"
) -> jax.Array:
  """Distribution of the ceiled score, pairing resample b with resample b.

  Args:
    score_samples: (n_boot,) from ``test_set_bootstrap``.
    ceiling_samples: (n_boot,) from ``ceiling_bootstrap`` (same key for shared
      neuroid draws; see the note above on independence).
    normalization: a name in ``normalize.NORMALIZATIONS``.

  Returns:
    (n_boot,) ceiled scores.
  """
  score_samples = jnp.asarray(score_samples)
  ceiling_samples = jnp.asarray(ceiling_samples)
  if score_samples.shape != ceiling_samples.shape:
    raise ValueError(
      f"ceiling_samples must have the shape of score_samples, "
      f"{tuple(score_samples.shape)}, got {tuple(ceiling_samples.shape)}."
    )
  return get_normalization(normalization)(score_samples, ceiling_samples)


def ceiled_jackknife(
  score,
  ceiling,
  score_jackknife,
  ceiling_jackknife,
  *,
  normalization: str = "r2_over_c",
  shared_neuroids: bool = True,
) -> tuple[jax.Array, ...]:
  """Jackknife groups of the ceiled score, for its BCa interval.

  Each group deletes units of one independently resampled population: the
  score's test stimuli (ceiling held at its estimate), the ceiling's stimuli
  (score held), and the neuroids, deleted from both at once when the two
  bootstraps share their neuroid draws (same key), else as two groups.

  Args:
    score, ceiling: point estimates (``test_set_score``, ``ceiling_score``).
    score_jackknife: tuple from ``jackknife_test_set``.
    ceiling_jackknife: tuple from ``jackknife_ceiling``.
    normalization: a name in ``normalize.NORMALIZATIONS``.
    shared_neuroids: whether both bootstraps drew the same neuroids.

  Returns:
    a tuple of jackknife groups for ``intervals.bca_interval``.
  """
  ceil = get_normalization(normalization)
  groups = [ceil(score_jackknife[0], ceiling), ceil(score, ceiling_jackknife[0])]
  score_n = score_jackknife[1] if len(score_jackknife) > 1 else None
  ceiling_n = ceiling_jackknife[1] if len(ceiling_jackknife) > 1 else None
  if score_n is not None and ceiling_n is not None and shared_neuroids:
    groups.append(ceil(score_n, ceiling_n))
  else:
    if score_n is not None:
      groups.append(ceil(score_n, ceiling))
    if ceiling_n is not None:
      groups.append(ceil(score, ceiling_n))
  return tuple(groups)
