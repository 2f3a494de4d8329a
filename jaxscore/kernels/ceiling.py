"""Split-half internal consistency: how well neuroids predict themselves.

Brain-Score's ceiling splits the repetition indices into two random halves,
averages each half's trials per stimulus (skipping missing trials), correlates
the two half-averages across stimuli per neuroid, and corrects the split-half
r to full length with Spearman-Brown. The median over neuroids and the mean
over splits are the caller's.

Missing trials are NaN cells of a (n_reps, n_stimuli, n_neuroids) array: a
stimulus shown 6 times in a session with 10 repetition slots has 4 NaN rows.
A stimulus enters a neuroid's correlation only if both halves have at least
one trial of it for that neuroid (pairwise complete).
"""

import jax
import jax.numpy as jnp
import numpy as np

from jaxscore.kernels.correlation import pearson_r


def split_half_masks(n_reps: int, *, n_splits: int = 10, key) -> jax.Array:
  """Random halves of the repetition indices, like ShuffleSplit(train_size=0.5).

  Args:
    n_reps: number of repetition slots.
    n_splits: number of independent random halvings.
    key: a ``jax.random`` key.

  Returns:
    (n_splits, n_reps) bool; True marks the first half, which holds
    ``n_reps // 2`` repetitions; the second half holds the rest.
  """
  if not isinstance(n_reps, int | np.integer) or n_reps < 2:
    raise ValueError(f"n_reps must be an integer of at least 2, got {n_reps!r}.")
  if not isinstance(n_splits, int | np.integer) or n_splits < 1:
    raise ValueError(f"n_splits must be a positive integer, got {n_splits!r}.")
  n_first = n_reps // 2

  def one_split(split_key):
    ranks = jnp.argsort(jax.random.permutation(split_key, n_reps))
    return ranks < n_first

  return jax.vmap(one_split)(jax.random.split(key, n_splits))


def spearman_brown(r, n=2.0):
  """Spearman-Brown prophecy: reliability of a test ``n`` times as long.

  Args:
    r: array of correlations (any shape).
    n: length factor; 2 corrects a split-half r to the full set.

  Returns:
    ``n r / (1 + (n - 1) r)``, shaped like ``r``. r = -1/(n-1) divides by zero.
  """
  r = jnp.asarray(r)
  return n * r / (1 + (n - 1) * r)


def _half_mean(responses, in_half):
  """NaN-skipping mean over the repetitions where ``in_half`` is True.

  Args:
    responses: (n_reps, n_stimuli, n_neuroids) single trials, NaN if missing.
    in_half: (n_reps,) bool.

  Returns:
    (n_stimuli, n_neuroids) means, and the bool mask of cells with a trial.
  """
  present = in_half[:, None, None] & ~jnp.isnan(responses)  # (n_reps, s, t)
  total = jnp.sum(jnp.where(present, responses, 0), axis=0)  # (n_stimuli, t)
  count = jnp.sum(present, axis=0)
  return total / jnp.maximum(count, 1), count > 0


@jax.jit
def split_half_consistency(responses, first_half):
  """Spearman-Brown corrected split-half r per neuroid, for one halving.

  Args:
    responses: (n_reps, n_stimuli, n_neuroids) single-trial responses, NaN
      where a stimulus has no trial in that repetition slot.
    first_half: (n_reps,) bool, True for the repetitions of the first half;
      the others form the second half.

  Returns:
    (n_neuroids,) corrected consistency ``2r / (1 + r)``, in the dtype of
    ``responses``. NaN for a neuroid whose half-means are constant over the
    stimuli both halves cover, or that has fewer than two such stimuli.
  """
  responses = jnp.asarray(responses)
  first_half = jnp.asarray(first_half)
  if responses.ndim != 3:
    raise ValueError(
      "responses must be a 3-D array of shape (n_reps, n_stimuli, n_neuroids), "
      f"got shape {tuple(responses.shape)}."
    )
  if first_half.shape != responses.shape[:1]:
    raise ValueError(
      f"first_half must have shape ({responses.shape[0]},), one flag per "
      f"repetition, got {tuple(first_half.shape)}."
    )
  if not jnp.issubdtype(responses.dtype, jnp.floating):
    responses = responses.astype(jnp.result_type(float))
  first_half = first_half.astype(bool)
  first, in_first = _half_mean(responses, first_half)
  second, in_second = _half_mean(responses, ~first_half)
  r = pearson_r(first, second, mask=in_first & in_second)  # (n_neuroids,)
  return spearman_brown(r).astype(responses.dtype)


@jax.jit
def split_half_ceiling(responses, masks):
  """Split-half consistency for many halvings at once.

  Args:
    responses: (n_reps, n_stimuli, n_neuroids) single trials, NaN if missing.
    masks: (n_splits, n_reps) bool halvings, e.g. from ``split_half_masks``.

  Returns:
    (n_splits, n_neuroids) Spearman-Brown corrected consistencies; take the
    median over neuroids and the mean over splits for Brain-Score's ceiling.
  """
  masks = jnp.asarray(masks)
  if masks.ndim != 2:
    raise ValueError(
      f"masks must be a 2-D array of shape (n_splits, n_reps), got shape "
      f"{tuple(masks.shape)}."
    )
  return jax.vmap(split_half_consistency, in_axes=(None, 0))(responses, masks)
