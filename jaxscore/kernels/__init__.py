"""Pure, jit-able numerical kernels: splits, regression, correlation, ceilings.

Each kernel handles one case (one split, one halving, one alpha) and is batched
by the caller with ``jax.vmap``. Kernels import only jax, numpy and each other.

The function ``rsa`` is not re-exported: it would hide the module
``jaxscore.kernels.rsa``; call ``kernels.rsa.rsa``.
"""

from jaxscore.kernels.bootstrap import (
  ResampleDraw,
  ceiled_bootstrap,
  ceiled_jackknife,
  ceiling_bootstrap,
  ceiling_score,
  draw_ceiling,
  draw_test_set,
  jackknife_ceiling,
  jackknife_test_set,
  paired_difference,
  shard_resamples,
  test_set_bootstrap,
  test_set_score,
)
from jaxscore.kernels.ceiling import (
  spearman_brown,
  split_half_ceiling,
  split_half_consistency,
  split_half_masks,
)
from jaxscore.kernels.correlation import (
  pearson_r,
)
from jaxscore.kernels.intervals import (
  acceleration,
  bca_interval,
  bootstrap_p_value,
  percentile_interval,
)
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
from jaxscore.kernels.rsa import (
  gram_cka,
  gram_from_rdm,
  kendall_tau_a,
  linear_cka,
  rdm,
  spearman_r,
  upper_triangle,
)
from jaxscore.kernels.splits import (
  Splits,
  shuffle_splits,
  stratified_shuffle_splits,
  validate_splits,
)

__all__ = [
  "NORMALIZATIONS",
  "ResampleDraw",
  "RidgeResult",
  "Splits",
  "acceleration",
  "bca_interval",
  "bootstrap_p_value",
  "ceiled_bootstrap",
  "ceiled_jackknife",
  "ceiling_bootstrap",
  "ceiling_score",
  "center_gram",
  "draw_ceiling",
  "draw_test_set",
  "explained_variance",
  "get_normalization",
  "gram_cka",
  "gram_from_rdm",
  "jackknife_ceiling",
  "jackknife_test_set",
  "kendall_tau_a",
  "linear_cka",
  "paired_difference",
  "pearson_r",
  "percentile_interval",
  "pls_fit_predict",
  "pls_fit_predict_gram",
  "rdm",
  "ridge_fit_predict",
  "ridge_fit_predict_gram",
  "ridge_gcv_fit_predict",
  "ridge_gcv_fit_predict_gram",
  "ridge_gcv_from_moments",
  "ridge_path_predict",
  "shard_resamples",
  "shuffle_splits",
  "spearman_brown",
  "spearman_r",
  "split_half_ceiling",
  "split_half_consistency",
  "split_half_masks",
  "squared_ratio",
  "stratified_shuffle_splits",
  "test_set_bootstrap",
  "test_set_score",
  "upper_triangle",
  "validate_splits",
]
