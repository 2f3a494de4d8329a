"""Pure, jit-able numerical kernels: splits, regression, correlation, ceilings.

Each kernel handles one case (one split, one halving, one alpha) and is batched
by the caller with ``jax.vmap``. Kernels import only jax and numpy.
"""

from jaxscore.kernels.ceiling import (
  spearman_brown,
  split_half_ceiling,
  split_half_consistency,
  split_half_masks,
)
from jaxscore.kernels.correlation import pearson_r
from jaxscore.kernels.normalize import (
  NORMALIZATIONS,
  explained_variance,
  get_normalization,
  squared_ratio,
)
from jaxscore.kernels.regression import (
  RidgeResult,
  center_gram,
  pls_fit_predict,
  pls_fit_predict_gram,
  ridge_fit_predict,
  ridge_fit_predict_gram,
  ridge_gcv_fit_predict,
  ridge_gcv_fit_predict_gram,
  ridge_gcv_from_moments,
  ridge_path_predict,
)
from jaxscore.kernels.splits import (
  Splits,
  shuffle_splits,
  stratified_shuffle_splits,
  validate_splits,
)

__all__ = [
  "NORMALIZATIONS",
  "RidgeResult",
  "Splits",
  "center_gram",
  "explained_variance",
  "get_normalization",
  "pearson_r",
  "pls_fit_predict",
  "pls_fit_predict_gram",
  "ridge_fit_predict",
  "ridge_fit_predict_gram",
  "ridge_gcv_fit_predict",
  "ridge_gcv_fit_predict_gram",
  "ridge_gcv_from_moments",
  "ridge_path_predict",
  "shuffle_splits",
  "spearman_brown",
  "split_half_ceiling",
  "split_half_consistency",
  "split_half_masks",
  "squared_ratio",
  "stratified_shuffle_splits",
  "validate_splits",
]

# Representational similarity (issue 5), appended while the block above is
# edited elsewhere; fold into the sorted imports and __all__ when convenient.
# The function rsa is not exported here: it would hide the module
# jaxscore.kernels.rsa; call it as kernels.rsa.rsa.
from jaxscore.kernels.rsa import (
  gram_cka,
  gram_from_rdm,
  kendall_tau_a,
  linear_cka,
  rdm,
  spearman_r,
  upper_triangle,
)

__all__ += [
  "gram_cka",
  "gram_from_rdm",
  "kendall_tau_a",
  "linear_cka",
  "rdm",
  "spearman_r",
  "upper_triangle",
]
