"""Symmetric eigendecomposition that is safe to batch on the CPU.

On the CPU, jaxlib (0.10) runs a batched ``eigh`` as one LAPACK call that
spreads its matrices over XLA's intra-op thread pool and then blocks a pool
thread until they finish. When XLA runs two such calls side by side (two
layers or two splits in one compiled function) on a machine with two pool
threads, both threads block and the matrices they wait for never start: the
program hangs with every thread idle. ``eigh`` here is ``jnp.linalg.eigh``
for one matrix; under ``jax.vmap`` on the CPU it decomposes the batch one
matrix after another (``jax.lax.map``), so no LAPACK call ever waits on the
pool. On GPU and TPU the batched call is kept.

``eigh`` has no derivative rule (``jax.custom_batching.custom_vmap``); no
differentiated path in jaxscore goes through it.
"""

import jax
import jax.numpy as jnp


@jax.custom_batching.custom_vmap
def eigh(matrix: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(eigenvalues ascending, eigenvectors as columns) of a symmetric matrix.

  Args:
    matrix: (n, n) symmetric.
  """
  eigenvalues, eigenvectors = jnp.linalg.eigh(matrix)
  return eigenvalues, eigenvectors


@eigh.def_vmap
def _eigh_batched(axis_size, in_batched, matrix):
  del axis_size
  (batched,) = in_batched
  if not batched:
    return eigh(matrix), (False, False)
  if jax.default_backend() == "cpu":
    return jax.lax.map(eigh, matrix), (True, True)
  return tuple(jnp.linalg.eigh(matrix)), (True, True)
