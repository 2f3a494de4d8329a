"""The batch-safe eigh: NumPy's answer, under vmap and nested vmap, in one program."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxscore.kernels import linalg

DTYPES = [np.float32, np.float64]
RTOL = {np.float32: 1e-4, np.float64: 1e-10}


def _symmetric(shape, seed=0):
  """Symmetric positive semi-definite matrices, (..., n, n), well separated spectra."""
  rng = np.random.default_rng(seed)
  A = rng.standard_normal((*shape[:-1], shape[-1] + 3))
  return A @ np.swapaxes(A, -1, -2)


def _check(matrices, eigenvalues, eigenvectors, dtype):
  expected = np.linalg.eigvalsh(matrices.astype(np.float64))
  scale = np.abs(expected).max()
  np.testing.assert_allclose(eigenvalues, expected, atol=RTOL[dtype] * scale)
  # The decomposition rebuilds the matrix, and the vectors are orthonormal.
  rebuilt = np.einsum(
    "...ik,...k,...jk->...ij", eigenvectors, eigenvalues, eigenvectors
  )
  np.testing.assert_allclose(rebuilt, matrices, atol=RTOL[dtype] * scale)
  eye = np.broadcast_to(np.eye(matrices.shape[-1]), matrices.shape)
  gram = np.swapaxes(eigenvectors, -1, -2) @ eigenvectors
  np.testing.assert_allclose(gram, eye, atol=10 * RTOL[dtype] * matrices.shape[-1])


@pytest.mark.parametrize("dtype", DTYPES)
def test_one_matrix_agrees_with_numpy(dtype):
  matrix = _symmetric((12, 12)).astype(dtype)
  values, vectors = jax.jit(linalg.eigh)(matrix)
  assert values.dtype == vectors.dtype == dtype
  _check(matrix, np.asarray(values), np.asarray(vectors), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_vmap_and_nested_vmap_agree_with_numpy(dtype):
  matrices = _symmetric((3, 4, 9, 9), seed=1).astype(dtype)
  values, vectors = jax.jit(jax.vmap(jax.vmap(linalg.eigh)))(matrices)
  assert values.shape == (3, 4, 9) and vectors.shape == (3, 4, 9, 9)
  _check(matrices, np.asarray(values), np.asarray(vectors), dtype)
  # An unbatched argument inside a vmap over something else.
  one = matrices[0, 0]
  values = jax.vmap(lambda s: linalg.eigh(one)[0] * s)(jnp.arange(1.0, 3.0))
  _check(one, np.asarray(values[0]), np.asarray(linalg.eigh(one)[1]), dtype)


def test_many_batched_decompositions_in_one_program_finish():
  # Several independent batched decompositions in one compiled function, run
  # repeatedly: with jaxlib's batched CPU eigh this hung now and then on a
  # two-core machine (see jaxscore.kernels.linalg).
  matrices = [
    _symmetric((10, 60 + k, 60 + k), seed=k).astype(np.float32) for k in range(4)
  ]

  @jax.jit
  def smallest(stacks):
    return [jax.vmap(linalg.eigh)(s)[0][:, 0] for s in stacks]

  for _ in range(30):
    got = jax.block_until_ready(smallest(matrices))
  for m, values in zip(matrices, got, strict=True):
    expected = np.linalg.eigvalsh(m.astype(np.float64))[:, 0]
    np.testing.assert_allclose(
      values, expected, atol=1e-3 * np.abs(expected).max() + 1e-2
    )
