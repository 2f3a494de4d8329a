r"""Speed of cross-validated scoring: jaxscore against the tools in use.

  python -m benchmarks.speed [--quick] [--out=benchmarks/SPEED.md]

Runs, in one process and on the same synthetic data of Brain-Score's shape
(2560 stimuli x 1000 features -> 168 neuroids, 10 shuffle splits 90/10,
20 ridge penalties, PLS with 25 components):

- scikit-learn as Brain-Score calls it: per split ``RidgeCV`` (one penalty per
  neuroid by leave-one-out) or ``PLSRegression(25, scale=False)``, then SciPy
  ``pearsonr`` per neuroid in a Python loop;
- himalaya's ``solve_ridge_cv_svd`` (numpy backend, float32 and float64;
  torch too when installed), over the same splits with correlation scoring;
- jaxscore's jitted kernels (all splits in one call), float32: ridge with the
  penalty chosen by exact leave-one-out (the default, RidgeCV's criterion)
  and by GCV (``selection="gcv"``), and PLS;
- jaxscore's bootstrap: 1,000 test-set resamples of the ridge score (per
  layer) and 1,000 resamples of a split-half ceiling with 10 repetitions of
  every stimulus (once per benchmark), each set against the time of the GCV
  ridge score itself.

Each is timed as the median of a few runs after one warm-up run (which for
jaxscore includes compilation, reported separately). The table gives wall
times, the ratio of each tool to jaxscore, and jaxscore ridge's achieved
GFLOP/s against this machine's measured float32 matrix-multiply rate.
"""

from __future__ import annotations

import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from jaxscore import kernels, scoring

_QUICK = flags.DEFINE_bool("quick", False, "Small shapes, one repeat: a smoke run.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed runs per tool (median kept).")
_OUT = flags.DEFINE_string("out", None, "Also write the table to this file.")


def make_data(n_stimuli, n_features, n_neuroids, *, seed=0):
  """Features with a p^-1/2 spectrum; neuroids a noisy linear readout."""
  rng = np.random.default_rng(seed)
  scale = np.arange(1, n_features + 1) ** -0.5
  X = rng.standard_normal((n_stimuli, n_features)) * scale
  W = rng.standard_normal((n_features, n_neuroids)) * scale[:, None]
  Y = X @ W
  Y = Y / Y.std(0) + 1.5 * rng.standard_normal((n_stimuli, n_neuroids))
  return X.astype(np.float32), Y.astype(np.float32)


def make_splits(n_stimuli, n_splits):
  from sklearn.model_selection import ShuffleSplit

  splitter = ShuffleSplit(n_splits=n_splits, train_size=0.9, random_state=1)
  train, test = zip(*splitter.split(np.zeros(n_stimuli)), strict=True)
  return kernels.validate_splits(train, test, n_stimuli)


def timed(fn, repeats):
  """(first-call seconds, median seconds of ``repeats`` further calls)."""
  start = time.perf_counter()
  fn()
  first = time.perf_counter() - start
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return first, statistics.median(times)


def pearson_loop(prediction, target):
  import scipy.stats

  return [
    scipy.stats.pearsonr(prediction[:, k], target[:, k])[0]
    for k in range(target.shape[1])
  ]


def sklearn_ridge(X, Y, splits, alphas):
  from sklearn.linear_model import RidgeCV

  for train, test in zip(splits.train, splits.test, strict=True):
    model = RidgeCV(alphas=alphas, alpha_per_target=True).fit(X[train], Y[train])
    pearson_loop(model.predict(X[test]), Y[test])


def sklearn_pls(X, Y, splits, n_components):
  from sklearn.cross_decomposition import PLSRegression

  for train, test in zip(splits.train, splits.test, strict=True):
    model = PLSRegression(n_components=n_components, scale=False)
    model.fit(X[train], Y[train])
    pearson_loop(model.predict(X[test]), Y[test])


def himalaya_ridge(X, Y, splits, alphas, backend, dtype):
  import himalaya.backend
  from himalaya.ridge import solve_ridge_cv_svd
  from himalaya.scoring import correlation_score

  himalaya.backend.set_backend(backend, on_error="raise")
  cv = list(zip(splits.train, splits.test, strict=True))
  solve_ridge_cv_svd(
    X.astype(dtype),
    Y.astype(dtype),
    alphas=alphas.astype(dtype),
    cv=cv,
    score_func=correlation_score,
    fit_intercept=True,
    warn=False,
  )


def jaxscore_run(X, Y, splits, regression):
  def run():
    return scoring.cross_validated_r(X, Y, splits, regression, dtype=jnp.float32)

  return run


def test_set_bootstrap_run(X, Y, splits, regression, n_boot, *, seed=1):
  """Test-set resamples (stimuli and neuroids) of a fitted score."""
  fitted = scoring.cross_validated_r(X, Y, splits, regression, dtype=jnp.float32)
  targets = Y[np.asarray(splits.test)]
  key = jax.random.key(seed)

  def run():
    return jax.block_until_ready(
      kernels.test_set_bootstrap(
        fitted.predictions, targets, n_boot=n_boot, key=key, resample_neuroids=True
      )
    )

  return run


def ceiling_bootstrap_run(Y, n_boot, *, n_reps=10, seed=1):
  """Resamples of a split-half ceiling of 10 repetitions of every stimulus
  (once per benchmark, whatever the number of layers scored)."""
  rng = np.random.default_rng(seed)
  trials = (Y[None] + rng.standard_normal((n_reps, *Y.shape))).astype(np.float32)
  masks = kernels.split_half_masks(n_reps, n_splits=10, key=jax.random.key(0))
  key = jax.random.key(seed)

  def run():
    return jax.block_until_ready(
      kernels.ceiling_bootstrap(
        trials, masks, n_boot=n_boot, key=key, resample_neuroids=True
      )
    )

  return run


def matmul_rate(n=4096):
  """Measured float32 GFLOP/s of a JAX n x n matrix product."""
  a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), jnp.float32)
  product = jax.jit(lambda x: x @ x)
  jax.block_until_ready(product(a))
  _, seconds = timed(lambda: jax.block_until_ready(product(a)), 3)
  return 2 * n**3 / seconds / 1e9


def ridge_flops(n_train, n_test, n_features, n_neuroids, n_alphas, n_splits):
  """Floating-point operations of the minimal ridge path (see module doc)."""
  n, t, p, T = n_train, n_test, n_features, n_neuroids
  per_split = (
    2 * t * p * p  # Gram downdate by the test rows
    + 4 * p**3  # eigh of the p x p Gram (nominal)
    + 2 * p * p * T  # V^T (X^T Y)
    + 2 * t * p * p  # X_test V
    + 2 * t * p * T  # predictions at the chosen penalties
    + n_alphas * 4 * p * T  # GCV criterion per penalty
  )
  del n
  return n_splits * per_split


def main(argv):
  del argv
  if _QUICK.value:
    n_stimuli, n_features, n_neuroids, repeats = 400, 120, 20, 1
  else:
    n_stimuli, n_features, n_neuroids, repeats = 2560, 1000, 168, _REPEATS.value
  n_splits, n_alphas, n_components = 10, 20, 25
  X, Y = make_data(n_stimuli, n_features, n_neuroids)
  splits = make_splits(n_stimuli, n_splits)
  alphas = np.logspace(-3, 4, n_alphas)
  rows = []  # (task, tool, first call s, median s)

  ridge = scoring.Regression(kind="ridge", alphas=tuple(alphas))
  gcv = scoring.Regression(kind="ridge", alphas=tuple(alphas), selection="gcv")
  pls = scoring.Regression(kind="pls", n_components=n_components)
  for task, tool, regression in (
    ("ridge", "jaxscore f32", ridge),
    ("ridge", "jaxscore f32 gcv", gcv),
    ("pls", "jaxscore f32", pls),
  ):
    first, median = timed(jaxscore_run(X, Y, splits, regression), repeats)
    rows.append((task, tool, first, median))
  first, median = timed(test_set_bootstrap_run(X, Y, splits, gcv, 1000), repeats)
  rows.append(("bootstrap", "jaxscore 1000 test-set resamples", first, median))
  first, median = timed(ceiling_bootstrap_run(Y, 1000), repeats)
  rows.append(("bootstrap", "jaxscore 1000 ceiling resamples", first, median))
  rows.append(
    (
      "ridge",
      "sklearn RidgeCV",
      *timed(lambda: sklearn_ridge(X, Y, splits, alphas), repeats),
    )
  )
  rows.append(
    (
      "pls",
      "sklearn PLSRegression",
      *timed(lambda: sklearn_pls(X, Y, splits, n_components), repeats),
    )
  )
  backends = ["numpy"]
  try:
    import torch  # noqa: F401

    backends.append("torch")
  except ImportError:
    pass
  for backend in backends:
    for dtype in (np.float64, np.float32):
      name = f"himalaya {backend} {np.dtype(dtype).name}"
      rows.append(
        (
          "ridge",
          name,
          *timed(
            lambda b=backend, d=dtype: himalaya_ridge(X, Y, splits, alphas, b, d),
            repeats,
          ),
        )
      )

  peak = matmul_rate(1024 if _QUICK.value else 4096)
  n_train, n_test = splits.train.shape[1], splits.test.shape[1]
  flops = ridge_flops(n_train, n_test, n_features, n_neuroids, n_alphas, n_splits)
  table = format_table(rows, peak, flops, (n_stimuli, n_features, n_neuroids))
  table += "\n\ncommand: python -m benchmarks.speed" + (
    " --quick" if _QUICK.value else f" --repeats={repeats}"
  )
  print(table)
  if _OUT.value:
    with open(_OUT.value, "w") as f:
      f.write(table + "\n")


def format_table(rows, peak, flops, shape) -> str:
  ours = {task: median for task, tool, _, median in rows if tool == "jaxscore f32"}
  gcv = next(median for _, tool, _, median in rows if tool == "jaxscore f32 gcv")
  # the bootstrap is set against the GCV ridge score it resamples
  ours["bootstrap"] = gcv
  lines = [
    f"# Speed: {shape[0]} stimuli x {shape[1]} features -> {shape[2]} neuroids,"
    " 10 splits, 20 alphas, PLS 25",
    "",
    f"machine: {platform.processor() or platform.machine()}, "
    f"{jax.device_count()} x {jax.devices()[0].device_kind} ({jax.default_backend()}),"
    f" jax {jax.__version__}",
    "",
    "| task | tool | first call s | median s | tool / jaxscore (LOO ridge, PLS) |",
    "|---|---|---|---|---|",
  ]
  for task, tool, first, median in rows:
    lines.append(
      f"| {task} | {tool} | {first:.2f} | {median:.3f} | {median / ours[task]:.1f}x |"
    )
  achieved = flops / gcv / 1e9
  lines += [
    "",
    "The bootstrap rows' ratio is their time over the GCV ridge score's time.",
    "",
    f"jaxscore GCV ridge: {flops / 1e9:.0f} GFLOP (minimal path, see "
    f"ridge_flops) in {gcv:.3f} s = {achieved:.0f} GFLOP/s; measured f32 "
    f"matmul rate {peak:.0f} GFLOP/s ({100 * achieved / peak:.0f}% of it).",
  ]
  return "\n".join(lines)


if __name__ == "__main__":
  app.run(main)
