"""Pearson correlation per column, accurate in float32.

A one-pass formula (sums of x, y, x*y, x**2, y**2) cancels catastrophically in
float32 when the data sit on an offset much larger than their spread, as spike
counts and probabilities do. Here every column is first shifted by one of its
own values (an exact subtraction when the values are close to each other), then
centred on its mean, and only then multiplied.
"""

import jax
import jax.numpy as jnp


def _float_dtype(*arrays):
  """The floating dtype the inputs promote to (integers become JAX's default)."""
  dtype = jnp.result_type(*arrays)
  if not jnp.issubdtype(dtype, jnp.floating):
    dtype = jnp.result_type(float)
  return dtype


def _check_pair(x, y, mask):
  if x.ndim != 2:
    raise ValueError(
      f"x must be a 2-D array of shape (n, k), got shape {tuple(x.shape)}."
    )
  if y.shape != x.shape:
    raise ValueError(
      f"y must have the same shape as x, {tuple(x.shape)}, got {tuple(y.shape)}."
    )
  if mask is not None and mask.shape not in ((x.shape[0],), tuple(x.shape)):
    raise ValueError(
      f"mask must have shape ({x.shape[0]},) or {tuple(x.shape)}, "
      f"got {tuple(mask.shape)}."
    )


def _centre(z, mask):
  """Centres each column of ``z`` on its mean over the rows where mask is True.

  The column is first shifted by its value in the first kept row, so that the
  mean is taken over small numbers; rows outside the mask become exactly 0.
  """
  first = jnp.argmax(mask, axis=0)  # (k,) first kept row of each column
  reference = jnp.take_along_axis(z, first[None, :], axis=0)  # (1, k)
  shifted = jnp.where(mask, z - reference, 0)
  count = jnp.sum(mask, axis=0)  # (k,)
  mean = jnp.sum(shifted, axis=0) / jnp.maximum(count, 1)
  return jnp.where(mask, shifted - mean, 0)


@jax.jit
def pearson_r(x, y, *, mask=None):
  """Pearson correlation of matching columns of ``x`` and ``y``, over axis 0.

  Two-pass: each column is centred before any product is formed, so float32
  keeps its accuracy for data whose offset is 1e3-1e6 times their spread.

  Args:
    x: (n, k) array, e.g. n_stimuli x n_neuroids predictions.
    y: (n, k) array of the same shape, e.g. the recorded responses.
    mask: optional (n,) or (n, k) bool array; only rows (or cells) where it is
      True enter the correlation of their column (pairwise complete data).
      Values outside the mask are ignored, even if they are NaN.

  Returns:
    (k,) correlations in [-1, 1], in the floating dtype of the inputs. A column
    where x or y has zero variance over its kept rows (a dead unit, a constant
    neuroid, or fewer than two kept rows) gives NaN, on purpose: the caller
    decides whether to drop it, never a silent 0.
  """
  x, y = jnp.asarray(x), jnp.asarray(y)
  _check_pair(x, y, None if mask is None else jnp.asarray(mask))
  dtype = _float_dtype(x, y)
  x, y = x.astype(dtype), y.astype(dtype)
  if mask is None:
    mask = jnp.ones(x.shape, dtype=bool)
  else:
    mask = jnp.broadcast_to(
      jnp.asarray(mask, dtype=bool).reshape(x.shape[0], -1), x.shape
    )
  xc, yc = _centre(x, mask), _centre(y, mask)  # (n, k) each
  sxy = jnp.sum(xc * yc, axis=0)  # (k,)
  sxx = jnp.sum(xc * xc, axis=0)
  syy = jnp.sum(yc * yc, axis=0)
  valid = (sxx > 0) & (syy > 0)
  # sqrt of each factor, not of the product, so neither can overflow.
  denominator = jnp.sqrt(jnp.where(valid, sxx, 1)) * jnp.sqrt(jnp.where(valid, syy, 1))
  r = jnp.where(valid, sxy / denominator, jnp.nan)
  return jnp.clip(r, -1, 1).astype(dtype)
