"""Full-refit bootstrap against a NumPy / scikit-learn loop over resamples."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest
from sklearn.linear_model import Ridge

from jaxscore.kernels import bootstrap, refit

ALPHAS = np.logspace(-2, 3, 6)
DTYPES = [np.float32, np.float64]
KEY = jax.random.key(11)
N_BOOT = 5


def _data(n_stimuli=48, n_features=6, n_neuroids=4, n_splits=3, n_test=8, seed=0):
  rng = np.random.default_rng(seed)
  X = rng.standard_normal((n_stimuli, n_features)) + 2.0
  Y = X @ rng.standard_normal((n_features, n_neuroids)) + 2 * rng.standard_normal(
    (n_stimuli, n_neuroids)
  )
  order = np.stack([rng.permutation(n_stimuli) for _ in range(n_splits)])
  return X, Y, order[:, n_test:], order[:, :n_test]


def _gcv_alpha(X, y):
  """GCV over ALPHAS on the given (repeated) rows, full hat matrix."""
  n, p = X.shape
  Xc, yc = X - X.mean(0), y - y.mean()
  scores = []
  for alpha in ALPHAS:
    H = Xc @ np.linalg.solve(Xc.T @ Xc + alpha * np.eye(p), Xc.T)
    rss = np.sum((yc - H @ yc) ** 2)
    scores.append(n * rss / (n - 1 - np.trace(H)) ** 2)
  return ALPHAS[int(np.argmin(scores))]


def _reference(X, Y, train, test, *, resample_neuroids):
  """Per resample: refit on repeated rows (sklearn), score the fixed test set."""
  n_splits, n_train = train.shape
  scores = []
  for b in range(N_BOOT):
    draw = refit.draw_refit(
      b,
      key=KEY,
      n_splits=n_splits,
      n_train=n_train,
      n_neuroids=Y.shape[1],
      resample_neuroids=resample_neuroids,
    )
    counts, neuroids = np.asarray(draw.counts), np.asarray(draw.neuroids)
    medians = []
    for s in range(n_splits):
      rows = np.repeat(train[s], counts[s])
      r = []
      for k in range(Y.shape[1]):
        alpha = _gcv_alpha(X[rows], Y[rows, k])
        repeated = Ridge(alpha=alpha).fit(X[rows], Y[rows, k]).predict(X[test[s]])
        weighted = (
          Ridge(alpha=alpha)
          .fit(X[train[s]], Y[train[s], k], sample_weight=counts[s].astype(float))
          .predict(X[test[s]])
        )
        np.testing.assert_allclose(weighted, repeated, rtol=1e-8, atol=1e-8)
        r.append(np.corrcoef(repeated, Y[test[s], k])[0, 1])
      medians.append(np.median(np.asarray(r)[neuroids]))
    scores.append(np.mean(medians))
  return np.array(scores)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("resample_neuroids", [False, True])
def test_refit_matches_sklearn_on_repeated_rows(dtype, resample_neuroids):
  X, Y, train, test = _data()
  expected = _reference(X, Y, train, test, resample_neuroids=resample_neuroids)
  scores = refit.refit_bootstrap(
    X.astype(dtype),
    Y.astype(dtype),
    train,
    test,
    ALPHAS,
    n_boot=N_BOOT,
    key=KEY,
    resample_neuroids=resample_neuroids,
    chunk_size=2,
  )
  assert scores.shape == (N_BOOT,) and scores.dtype == dtype
  atol = 1e-10 if dtype == np.float64 else 2e-5
  np.testing.assert_allclose(scores, expected, rtol=0, atol=atol)
  assert np.std(expected) > 1e-3  # the resamples really differ


@pytest.mark.parametrize("solver", ["eigh", "cholesky"])
def test_same_key_same_bits(solver):
  X, Y, train, test = _data(seed=1)
  runs = [
    refit.refit_bootstrap(
      X, Y, train, test, ALPHAS, n_boot=7, key=KEY, chunk_size=3, solver=solver
    )
    for _ in range(2)
  ]
  np.testing.assert_array_equal(runs[0], runs[1])
  other_chunks = refit.refit_bootstrap(
    X, Y, train, test, ALPHAS, n_boot=7, key=KEY, chunk_size=7, solver=solver
  )
  np.testing.assert_allclose(other_chunks, runs[0], rtol=0, atol=1e-12)
  other_key = refit.refit_bootstrap(
    X, Y, train, test, ALPHAS, n_boot=7, key=jax.random.key(3), solver=solver
  )
  assert not np.array_equal(other_key, runs[0])


def test_solvers_agree():
  X, Y, train, test = _data(seed=2)
  eigh, chol = (
    refit.refit_bootstrap(X, Y, train, test, ALPHAS, n_boot=4, key=KEY, solver=s)
    for s in ("eigh", "cholesky")
  )
  np.testing.assert_allclose(chol, eigh, rtol=0, atol=1e-9)


def test_draws_count_the_training_stimuli_and_share_the_neuroids():
  draw = refit.draw_refit(
    4, key=KEY, n_splits=3, n_train=40, n_neuroids=9, resample_neuroids=True
  )
  assert draw.counts.shape == (3, 40)
  np.testing.assert_array_equal(np.sum(draw.counts, axis=1), [40, 40, 40])
  assert len(np.unique(np.asarray(draw.counts), axis=0)) == 3  # independent splits
  test_set = bootstrap.draw_test_set(
    4, key=KEY, n_splits=3, n_test=8, n_neuroids=9, resample_neuroids=True
  )
  np.testing.assert_array_equal(draw.neuroids, test_set.neuroids)


def test_bad_inputs_raise():
  X, Y, train, test = _data()
  with pytest.raises(ValueError, match="n_features <= n_train"):
    refit.refit_bootstrap(np.ones((48, 50)), Y, train, test, ALPHAS, n_boot=2, key=KEY)
  with pytest.raises(ValueError, match="one row per stimulus"):
    refit.refit_bootstrap(X, Y[:-1], train, test, ALPHAS, n_boot=2, key=KEY)
  with pytest.raises(ValueError, match="NaN or infinite"):
    bad = X.copy()
    bad[0, 0] = np.nan
    refit.refit_bootstrap(bad, Y, train, test, ALPHAS, n_boot=2, key=KEY)
  with pytest.raises(ValueError, match="n_boot must be a positive integer"):
    refit.refit_bootstrap(X, Y, train, test, ALPHAS, n_boot=0, key=KEY)


_DEVICE_SCRIPT = """
import os, sys
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
import jax
jax.config.update("jax_enable_x64", True)
import numpy as np
from jaxscore.kernels import refit
assert len(jax.local_devices()) == 2, jax.local_devices()
d = np.load(sys.argv[1])
scores = refit.refit_bootstrap(d["X"], d["Y"], d["train"], d["test"], d["alphas"],
  n_boot=6, key=jax.random.key(11), resample_neuroids=True, chunk_size=3)
assert len(scores.sharding.device_set) == 2, scores.sharding
np.save(sys.argv[2], np.asarray(scores))
"""


def test_two_fake_devices_give_the_same_numbers(tmp_path):
  X, Y, train, test = _data(seed=4)
  inputs, outputs = tmp_path / "in.npz", tmp_path / "out.npy"
  np.savez(inputs, X=X, Y=Y, train=train, test=test, alphas=ALPHAS)
  script = tmp_path / "two.py"
  script.write_text(textwrap.dedent(_DEVICE_SCRIPT))
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env["PYTHONPATH"] = os.pathsep.join(
    [str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH", "")]
  )
  done = subprocess.run(
    [sys.executable, str(script), str(inputs), str(outputs)],
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert done.returncode == 0, done.stderr[-3000:]
  one = refit.refit_bootstrap(
    X,
    Y,
    train,
    test,
    ALPHAS,
    n_boot=6,
    key=KEY,
    resample_neuroids=True,
    chunk_size=3,
  )
  np.testing.assert_array_equal(np.load(outputs), one)
