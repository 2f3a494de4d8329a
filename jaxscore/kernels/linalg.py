"""Dense linear algebra that is safe to batch on the CPU.

On the CPU, jaxlib (0.10) runs a batched LAPACK call (``eigh``,
``cholesky``, ``solve_triangular``: any of them under ``jax.vmap``) as one
call that spreads its matrices over XLA's intra-op thread pool and then
blocks a pool thread until they finish. When XLA runs two such calls side by
side (two layers or two splits in one compiled function) on a machine with
two pool threads, both threads block and the matrices they wait for never
start: the program hangs with every thread idle (seen on this project's
2-core machines, in the scoring callback and in the training step).

The functions here are their ``jax.numpy`` / ``jax.scipy`` namesakes for one
matrix. Under ``jax.vmap`` on the CPU they decompose the batch one matrix
after another (``jax.lax.map``), so no LAPACK call waits on the pool; on GPU
and TPU the batched call is kept. They have no derivative rules
(``jax.custom_batching.custom_vmap``); code that is differentiated batches
with ``map_batch`` instead, which differentiates like ``jax.vmap``.
"""

import functools

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl


def _on_cpu() -> bool:
  return jax.default_backend() == "cpu"


def _one_at_a_time_on_cpu(fn):
  """``fn`` of unbatched arrays, batched sequentially on the CPU."""
  wrapped = jax.custom_batching.custom_vmap(fn)

  @wrapped.def_vmap
  def _batched(axis_size, in_batched, *args):
    if not any(in_batched):
      out = wrapped(*args)
      return out, jax.tree.map(lambda _: False, out)
    args = tuple(
      a if b else jnp.broadcast_to(a, (axis_size, *a.shape))
      for a, b in zip(args, in_batched, strict=True)
    )
    if _on_cpu():
      out = jax.lax.map(lambda xs: wrapped(*xs), args)
    else:
      out = jax.vmap(fn)(*args)
    return out, jax.tree.map(lambda _: True, out)

  return functools.wraps(fn)(wrapped)


@_one_at_a_time_on_cpu
def eigh(matrix: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(eigenvalues ascending, eigenvectors as columns) of a symmetric (n, n)."""
  eigenvalues, eigenvectors = jnp.linalg.eigh(matrix)
  return eigenvalues, eigenvectors


@_one_at_a_time_on_cpu
def cholesky(matrix: jax.Array) -> jax.Array:
  """Lower Cholesky factor of a symmetric positive definite (n, n)."""
  return jnp.linalg.cholesky(matrix)


@_one_at_a_time_on_cpu
def solve_lower(L: jax.Array, B: jax.Array) -> jax.Array:
  """``L^-1 B`` for lower triangular (n, n) ``L`` and (n, k) ``B``."""
  return jsl.solve_triangular(L, B, lower=True)


@_one_at_a_time_on_cpu
def solve_lower_transposed(L: jax.Array, B: jax.Array) -> jax.Array:
  """``L^-T B`` for lower triangular (n, n) ``L`` and (n, k) ``B``."""
  return jsl.solve_triangular(L, B, lower=True, trans="T")


def map_batch(fn, *xs):
  """``jax.vmap(fn)(*xs)``, but one slice after another on the CPU.

  For differentiated code whose linear algebra must not be batched on the
  CPU (see the module docstring): ``jax.lax.map`` differentiates as
  ``jax.vmap`` does. Maps over the leading axis of every argument. A
  ``jax.vmap`` around it batches the linear algebra again.
  """
  if _on_cpu():
    return jax.lax.map(lambda args: fn(*args), xs)
  return jax.vmap(fn)(*xs)
