"""Ceiling normalisations: turn a raw correlation and a ceiling into a score.

Brain-Score today reports ``r**2 / c`` (explained variance relative to the
ceiling); older Brain-Score versions reported ``(r / c)**2``. Both are chosen
by name from ``NORMALIZATIONS``.
"""

import jax.numpy as jnp


def explained_variance(raw, ceiling):
  """Current Brain-Score ceiling normalisation, ``raw**2 / ceiling``.

  Args:
    raw: array of raw Pearson r (any shape, e.g. (n_splits,) or scalar).
    ceiling: array broadcastable against ``raw``; the split-half ceiling of
      the same neuroids.

  Returns:
    ``raw**2 / ceiling`` with the broadcast shape of the inputs.
  """
  raw, ceiling = jnp.asarray(raw), jnp.asarray(ceiling)
  return raw**2 / ceiling


def squared_ratio(raw, ceiling):
  """Legacy Brain-Score ceiling normalisation, ``(raw / ceiling)**2``.

  Args:
    raw: array of raw Pearson r (any shape).
    ceiling: array broadcastable against ``raw``.

  Returns:
    ``(raw / ceiling)**2`` with the broadcast shape of the inputs.
  """
  raw, ceiling = jnp.asarray(raw), jnp.asarray(ceiling)
  return (raw / ceiling) ** 2


NORMALIZATIONS = {
  "r2_over_c": explained_variance,
  "squared_ratio": squared_ratio,
}


def get_normalization(name: str):
  """Returns the normalisation called ``name`` from ``NORMALIZATIONS``.

  Raises:
    ValueError: if ``name`` is not one of the table's keys; the message lists
      the valid names.
  """
  if not isinstance(name, str) or name not in NORMALIZATIONS:
    valid = ", ".join(repr(k) for k in sorted(NORMALIZATIONS))
    raise ValueError(f"normalization must be one of {valid}, got {name!r}.")
  return NORMALIZATIONS[name]
