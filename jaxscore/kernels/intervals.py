"""Confidence intervals and p-values from bootstrap distributions.

Percentile interval: the (1 - level) / 2 and (1 + level) / 2 quantiles of the
resampled statistic, linearly interpolated (``numpy.percentile``'s default).

BCa (bias-corrected and accelerated; Efron 1987, Efron & Tibshirani 1993
ch. 14.3): the quantile levels move to
  alpha_k = Phi(z0 + (z0 + z_k) / (1 - a (z0 + z_k))),  z_k = Phi^-1(alpha_k),
with the bias correction z0 = Phi^-1(share of resamples below the estimate,
ties counted half) and the acceleration a from the jackknife. For independently
resampled groups g (a stratified bootstrap: one group per split's test set,
plus the neuroids when they are resampled too), with n_g units and
leave-one-out values theta_(gi),
  u_gi = (n_g - 1) / n_g (mean_i theta_(gi) - theta_(gi))
  a = sum u^3 / (6 (sum u^2)^(3/2)),
the multi-sample form ``scipy.stats.bootstrap(method='BCa')`` uses (with one
group, the (n - 1) / n factors cancel).

Axis legend: n_boot resamples.

References:
  Efron (1987), Better bootstrap confidence intervals, JASA 82:171-185.
  Efron & Tibshirani (1993), An Introduction to the Bootstrap, ch. 14, 15.
  Davison & Hinkley (1997), Bootstrap Methods and their Application, ch. 4-5.
"""

import functools

import jax
import jax.numpy as jnp
from jax.scipy.special import ndtr, ndtri


def _check_level(level):
  if not isinstance(level, float | int) or not 0 < level < 1:
    raise ValueError(f"level must be a number in (0, 1), got {level!r}.")


def _check_samples(samples):
  samples = jnp.asarray(samples)
  if samples.ndim < 1 or samples.shape[-1] < 1:
    raise ValueError(
      "samples must hold at least one resample along its last axis, got shape "
      f"{tuple(samples.shape)}."
    )
  if not jnp.issubdtype(samples.dtype, jnp.floating):
    samples = samples.astype(jnp.result_type(float))
  return samples


@functools.partial(jax.jit, static_argnames="level")
def percentile_interval(samples, level: float = 0.95) -> jax.Array:
  """Equal-tailed percentile interval.

  Args:
    samples: (..., n_boot) bootstrap distribution(s).
    level: coverage, e.g. 0.95.

  Returns:
    (..., 2) lower and upper bounds; NaN if any sample is NaN.
  """
  _check_level(level)
  samples = _check_samples(samples)
  tail = (1 - level) / 2
  q = jnp.asarray([tail, 1 - tail], samples.dtype)
  return jnp.moveaxis(jnp.quantile(samples, q, axis=-1), 0, -1)


def _groups(jackknife_values):
  if isinstance(jackknife_values, tuple | list):
    return [jnp.asarray(g) for g in jackknife_values]
  return [jnp.asarray(jackknife_values)]


@jax.jit
def acceleration(jackknife_values) -> jax.Array:
  """BCa acceleration from leave-one-out values (formula above).

  Args:
    jackknife_values: one array, or a tuple of arrays, of leave-one-out
      statistics. The last axis of each indexes the deleted unit; leading
      axes index further independent groups, e.g. (n_splits, n_test) from
      ``bootstrap.jackknife_test_set``.

  Returns:
    scalar a; 0 when every jackknife value of every group is the same.
  """
  numerator, denominator = 0.0, 0.0
  for values in _groups(jackknife_values):
    n = values.shape[-1]
    u = (n - 1) / n * (jnp.mean(values, axis=-1, keepdims=True) - values)
    numerator = numerator + jnp.sum(u**3)
    denominator = denominator + jnp.sum(u**2)
  safe = jnp.where(denominator > 0, denominator, 1)
  return jnp.where(denominator > 0, numerator / (6 * safe**1.5), 0)


@functools.partial(jax.jit, static_argnames="level")
def bca_interval(samples, estimate, jackknife_values, level: float = 0.95):
  """Bias-corrected and accelerated bootstrap interval.

  Args:
    samples: (n_boot,) bootstrap distribution of the statistic.
    estimate: scalar, the statistic on the original data.
    jackknife_values: leave-one-out values, see ``acceleration``.
    level: coverage, e.g. 0.95.

  Returns:
    (2,) lower and upper bounds. NaN when the estimate lies outside the
    bootstrap distribution (z0 infinite) or a sample is NaN; use the
    percentile interval then.
  """
  _check_level(level)
  samples = _check_samples(samples)
  if samples.ndim != 1:
    raise ValueError(
      f"samples must be 1-D, (n_boot,), got shape {tuple(samples.shape)}."
    )
  estimate = jnp.asarray(estimate, samples.dtype)
  below = jnp.sum(samples < estimate) + jnp.sum(samples <= estimate)
  z0 = ndtri(below.astype(samples.dtype) / (2 * samples.shape[0]))
  a = acceleration(jackknife_values).astype(samples.dtype)
  tail = (1 - level) / 2
  z = ndtri(jnp.asarray([tail, 1 - tail], samples.dtype))
  shifted = z0 + z
  levels = ndtr(z0 + shifted / (1 - a * shifted))
  return jnp.quantile(samples, levels)


@jax.jit
def bootstrap_p_value(differences, null=0.0) -> jax.Array:
  """Two-sided bootstrap p-value that the true difference equals ``null``.

  p = min(1, 2 min((1 + #{d <= null}) / (n_boot + 1),
                   (1 + #{d >= null}) / (n_boot + 1)))
  is the smallest 1 - level at which the equal-tailed percentile interval of
  the paired differences excludes ``null`` (the interval inverted into a
  test), with the +1 correction that counts the observed data as one
  resample (Davison & Hinkley 1997, sec. 4.4), so p is never 0 and is valid
  at resolution 1 / (n_boot + 1).

  Args:
    differences: (n_boot,) paired bootstrap differences, e.g. from
      ``bootstrap.paired_difference``.
    null: the difference under the null hypothesis.

  Returns:
    scalar p-value in (0, 1]; NaN differences count on neither side.
  """
  differences = _check_samples(differences)
  n_boot = differences.shape[-1]
  at_most = jnp.sum(differences <= null, axis=-1)
  at_least = jnp.sum(differences >= null, axis=-1)
  tail = (1 + jnp.minimum(at_most, at_least)) / (n_boot + 1)
  return jnp.minimum(1, 2 * tail).astype(differences.dtype)
