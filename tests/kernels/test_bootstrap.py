"""Bootstrap kernels against plain numpy loops over the same draws."""

import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxscore.kernels import bootstrap, pearson_r, split_half_ceiling, split_half_masks

DTYPES = [np.float32, np.float64]
ATOL = {np.float32: 2e-5, np.float64: 1e-12}
KEY = jax.random.key(7)


# ---------------------------------------------------------------------------
# numpy references


def _pearson(x, y, *, constant_x):
  """Per-column r in float64; NaN for constant y, ``constant_x`` for constant x."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  xc, yc = x - x.mean(0), y - y.mean(0)
  y_varies, x_varies = np.ptp(y, axis=0) > 0, np.ptp(x, axis=0) > 0
  with np.errstate(invalid="ignore", divide="ignore"):
    r = (xc * yc).sum(0) / np.sqrt((xc**2).sum(0) * (yc**2).sum(0))
  r = np.where(x_varies, r, constant_x)
  return np.where(y_varies, r, np.nan)


def _score(predictions, targets, counts, neuroids):
  """One resample of the score: gather the drawn stimuli, r, median, mean."""
  r = []
  for s in range(targets.shape[0]):
    rows = np.repeat(np.arange(targets.shape[1]), counts[s])
    r.append(_pearson(predictions[s, rows], targets[s, rows], constant_x=0.0))
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices
    return np.nanmedian(np.array(r)[:, neuroids], axis=1).mean()


def _consistency(trials, first_half):
  """Spearman-Brown split-half r per neuroid, stimuli complete in both halves."""
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)  # nanmean of empty slices
    a = np.nanmean(trials[first_half], axis=0)
    b = np.nanmean(trials[~first_half], axis=0)
  out = []
  for j in range(trials.shape[2]):
    ok = np.isfinite(a[:, j]) & np.isfinite(b[:, j])
    r = _pearson(a[ok, j, None], b[ok, j, None], constant_x=np.nan)[0]
    out.append(2 * r / (1 + r))
  return np.array(out)


def _ceiling(trials, masks, counts, neuroids):
  trials = np.asarray(trials, np.float64)[:, np.repeat(np.arange(len(counts)), counts)]
  values = np.array([_consistency(trials, m) for m in np.asarray(masks)])
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)
    return np.nanmedian(values[:, neuroids], axis=1).mean()


# ---------------------------------------------------------------------------
# data


def _predictions(dtype, n_splits=3, n_test=12, n_neuroids=7, *, offset=0.0, seed=0):
  """Held-out predictions with signal, on an offset; neuroid 0 is sparse (one
  stimulus per split differs, so many resamples make it constant) and neuroid 1
  has a constant prediction in split 0."""
  rng = np.random.default_rng(seed)
  shape = (n_splits, n_test, n_neuroids)
  targets = rng.standard_normal(shape)
  predictions = 0.6 * targets + rng.standard_normal(shape)
  targets[:, :, 0] = 0.0
  targets[:, 3, 0] = 1.0
  predictions[0, :, 1] = 0.25
  return (predictions + offset).astype(dtype), (targets + offset).astype(dtype)


def _trials(dtype, n_reps=6, n_stimuli=30, n_neuroids=5, *, signal=2.0, seed=0):
  """Single trials with 3 to n_reps valid repetitions and scattered NaN cells."""
  rng = np.random.default_rng(seed)
  means = signal * rng.standard_normal((n_stimuli, n_neuroids)) + 20
  trials = means + rng.standard_normal((n_reps, n_stimuli, n_neuroids))
  n_valid = rng.integers(3, n_reps + 1, n_stimuli)
  trials[np.arange(n_reps)[:, None] >= n_valid[None, :]] = np.nan
  trials[rng.random(trials.shape) < 0.05] = np.nan
  return trials.astype(dtype)


def _test_draw(index, targets, resample_neuroids, key=KEY):
  n_splits, n_test, n_neuroids = targets.shape
  draw = bootstrap.draw_test_set(
    index,
    key=key,
    n_splits=n_splits,
    n_test=n_test,
    n_neuroids=n_neuroids,
    resample_neuroids=resample_neuroids,
  )
  return np.asarray(draw.counts), np.asarray(draw.neuroids)


# ---------------------------------------------------------------------------
# test-set bootstrap


# (dtype, resample_neuroids) pairs; the other tests reuse these compilations.
CASES = [(np.float32, True), (np.float32, False), (np.float64, False)]
N_BOOT, CHUNK = 24, 10


def _run(predictions, targets, resample_neuroids, *, key=KEY, chunk_size=CHUNK):
  return np.asarray(
    bootstrap.test_set_bootstrap(
      predictions,
      targets,
      n_boot=N_BOOT,
      key=key,
      resample_neuroids=resample_neuroids,
      chunk_size=chunk_size,
    )
  )


@pytest.mark.parametrize(("dtype", "resample_neuroids"), CASES)
@pytest.mark.parametrize("offset", [0.0, 1e3])
def test_test_set_matches_numpy_loop(dtype, resample_neuroids, offset):
  predictions, targets = _predictions(dtype, offset=offset)
  samples = bootstrap.test_set_bootstrap(
    predictions,
    targets,
    n_boot=N_BOOT,
    key=KEY,
    resample_neuroids=resample_neuroids,
    chunk_size=CHUNK,
  )
  assert samples.shape == (N_BOOT,) and samples.dtype == dtype
  draws = [_test_draw(b, targets, resample_neuroids) for b in range(N_BOOT)]
  expected = [_score(predictions, targets, *draw) for draw in draws]
  np.testing.assert_allclose(samples, expected, rtol=0, atol=ATOL[dtype])
  # The sparse neuroid 0 (stimulus 3) really was constant in some resamples.
  assert any(np.any(counts[:, 3] == 0) for counts, _ in draws)


@pytest.mark.parametrize("offset", [1e3, 1e6])
def test_float32_keeps_its_accuracy_on_large_offsets(offset):
  # Offsets of 1e3 and 1e6 times the spread; the reference reads the same
  # float32 numbers in float64.
  predictions, targets = _predictions(np.float32, offset=offset, seed=3)
  samples = _run(predictions, targets, False)
  expected = [
    _score(predictions, targets, *_test_draw(b, targets, False)) for b in range(N_BOOT)
  ]
  np.testing.assert_allclose(samples, expected, rtol=0, atol=5e-5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_score_is_the_raw_score_of_the_predictions(dtype):
  predictions, targets = _predictions(dtype, offset=5.0)
  score = bootstrap.test_set_score(predictions, targets)
  r = np.stack([pearson_r(p, y) for p, y in zip(predictions, targets, strict=True)])
  r = np.where(np.isnan(r) & (np.ptp(targets, axis=1) > 0), 0.0, r)
  assert score.dtype == dtype
  np.testing.assert_allclose(score, np.nanmedian(r, axis=1).mean(), atol=ATOL[dtype])


def test_draws_are_multinomial_and_depend_only_on_the_index():
  targets = np.zeros((4, 16, 9))
  counts, neuroids = _test_draw(3, targets, True)
  assert counts.shape == (4, 16) and counts.dtype == np.int32
  np.testing.assert_array_equal(counts.sum(1), 16)
  assert neuroids.shape == (9,) and neuroids.min() >= 0 and neuroids.max() < 9
  assert not np.array_equal(counts, _test_draw(4, targets, True)[0])
  np.testing.assert_array_equal(_test_draw(3, targets, False)[1], np.arange(9))
  many = np.stack([_test_draw(b, targets, False)[0] for b in range(50)])
  assert abs(many.mean() - 1) < 1e-12 and 0.8 < many.var() < 1.2  # 1 - 1/16
  # The ceiling draws the same neuroids from the same key, other stimuli.
  ceiling = bootstrap.draw_ceiling(
    3, key=KEY, n_stimuli=16, n_neuroids=9, resample_neuroids=True
  )
  np.testing.assert_array_equal(ceiling.neuroids, neuroids)
  assert not np.array_equal(ceiling.counts, counts[0])


def test_same_key_same_bits_whatever_the_chunk_size():
  predictions, targets = _predictions(np.float32)
  reference = _run(predictions, targets, True)
  np.testing.assert_array_equal(_run(predictions, targets, True), reference)
  assert not np.array_equal(
    _run(predictions, targets, True, key=jax.random.key(8)), reference
  )
  # 300 resamples as 3 chunks of 128, 2 of 192 and 1 of 320 (whole blocks of
  # 64): the same bits, and the first 24 are the 24 of a shorter run.
  runs = [
    np.asarray(
      bootstrap.test_set_bootstrap(
        predictions,
        targets,
        n_boot=300,
        key=KEY,
        resample_neuroids=True,
        chunk_size=chunk_size,
      )
    )
    for chunk_size in (128, 192, 1000)
  ]
  for run in runs[1:]:
    np.testing.assert_array_equal(run, runs[0])
  np.testing.assert_array_equal(runs[0][:N_BOOT], reference)


def test_one_trace_per_shape(monkeypatch):
  traces = []
  original = bootstrap._test_set_stack

  def counting(*args):
    traces.append(1)
    return original(*args)

  monkeypatch.setattr(bootstrap, "_test_set_stack", counting)
  predictions, targets = _predictions(np.float32, n_splits=2, n_test=9, n_neuroids=3)
  for seed, n_boot in enumerate((13, 14, 64)):  # one layout: a block of 64
    bootstrap.test_set_bootstrap(
      predictions + seed,
      targets,
      n_boot=n_boot,
      key=jax.random.key(seed),
      chunk_size=5,
    )
  assert len(traces) == 1
  # The kernel also runs inside a caller's jit, with the same bits.
  inside = jax.jit(
    lambda p, y, key: bootstrap.test_set_bootstrap(p, y, n_boot=13, key=key)
  )
  np.testing.assert_array_equal(
    inside(predictions, targets, KEY),
    bootstrap.test_set_bootstrap(predictions, targets, n_boot=13, key=KEY),
  )


@pytest.mark.parametrize("dtype", DTYPES)
def test_paired_difference_uses_the_same_resamples(dtype):
  predictions, targets = _predictions(dtype, seed=1)
  noise = np.random.default_rng(9).standard_normal(targets.shape)
  worse = (predictions + 2 * noise).astype(dtype)
  d = bootstrap.paired_difference(
    predictions, worse, targets, n_boot=N_BOOT, key=KEY, chunk_size=CHUNK
  )
  assert d.shape == (N_BOOT,) and d.dtype == dtype
  expected = [
    _score(predictions, targets, *_test_draw(b, targets, False))
    - _score(worse, targets, *_test_draw(b, targets, False))
    for b in range(N_BOOT)
  ]
  np.testing.assert_allclose(d, expected, rtol=0, atol=2 * ATOL[dtype])
  if dtype == np.float32:  # test_set_bootstrap has this compilation already
    a, b = _run(predictions, targets, False), _run(worse, targets, False)
    np.testing.assert_allclose(d, a - b, rtol=0, atol=2 * ATOL[dtype])
  same = bootstrap.paired_difference(
    predictions, predictions, targets, n_boot=N_BOOT, key=KEY, chunk_size=CHUNK
  )
  np.testing.assert_array_equal(same, 0)


def test_bad_inputs_raise():
  predictions, targets = _predictions(np.float64)
  with pytest.raises(ValueError, match="targets must be a 3-D array"):
    bootstrap.test_set_bootstrap(predictions, targets[0], n_boot=5, key=KEY)
  with pytest.raises(ValueError, match="predictions must have the shape of targets"):
    bootstrap.test_set_bootstrap(predictions[:, :5], targets, n_boot=5, key=KEY)
  with pytest.raises(ValueError, match="predictions has 1 NaN or infinite values"):
    bad = predictions.copy()
    bad[0, 0, 0] = np.nan
    bootstrap.test_set_bootstrap(bad, targets, n_boot=5, key=KEY)
  with pytest.raises(ValueError, match="trials has 1 infinite values"):
    trials = _trials(np.float64)
    trials[0, 0, 0] = np.inf
    bootstrap.ceiling_bootstrap(trials, np.ones((2, 6), bool), n_boot=5, key=KEY)
  with pytest.raises(ValueError, match="n_boot must be a positive integer"):
    bootstrap.test_set_bootstrap(predictions, targets, n_boot=0, key=KEY)
  with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
    bootstrap.test_set_bootstrap(predictions, targets, n_boot=5, key=KEY, chunk_size=0)
  with pytest.raises(ValueError, match="key must be a threefry2x32 key"):
    rbg = jax.random.key(0, impl="rbg")
    bootstrap.test_set_bootstrap(predictions, targets, n_boot=5, key=rbg)
  with pytest.raises(ValueError, match=r"masks must have shape \(n_halvings, 6\)"):
    bootstrap.ceiling_bootstrap(
      _trials(np.float64), np.ones((2, 5), bool), n_boot=5, key=KEY
    )


# ---------------------------------------------------------------------------
# ceiling bootstrap


def _ceiling_draw(index, trials, resample_neuroids):
  draw = bootstrap.draw_ceiling(
    index,
    key=KEY,
    n_stimuli=trials.shape[1],
    n_neuroids=trials.shape[2],
    resample_neuroids=resample_neuroids,
  )
  return np.asarray(draw.counts), np.asarray(draw.neuroids)


CEILING_CASES = [(np.float32, True), (np.float64, False)]
CEILING_BOOT, CEILING_CHUNK = 12, 5


def _ceiling_data(dtype):
  trials = _trials(dtype)
  trials[:, :, 4] = np.where(np.isnan(trials[:, :, 4]), np.nan, 1.0)  # constant
  return trials, np.asarray(split_half_masks(6, n_splits=4, key=jax.random.key(3)))


@pytest.mark.parametrize(("dtype", "resample_neuroids"), CEILING_CASES)
def test_ceiling_matches_numpy_loop(dtype, resample_neuroids):
  trials, masks = _ceiling_data(dtype)
  samples = bootstrap.ceiling_bootstrap(
    trials,
    masks,
    n_boot=CEILING_BOOT,
    key=KEY,
    resample_neuroids=resample_neuroids,
    chunk_size=CEILING_CHUNK,
  )
  assert samples.shape == (CEILING_BOOT,) and samples.dtype == dtype
  expected = [
    _ceiling(trials, masks, *_ceiling_draw(b, trials, resample_neuroids))
    for b in range(CEILING_BOOT)
  ]
  np.testing.assert_allclose(samples, expected, rtol=0, atol=ATOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_ceiling_score_is_split_half_ceiling(dtype):
  trials = _trials(dtype, seed=4)
  masks = split_half_masks(6, n_splits=5, key=jax.random.key(4))
  values = np.asarray(split_half_ceiling(trials, masks))
  expected = np.nanmedian(values, axis=1).mean()
  np.testing.assert_allclose(
    bootstrap.ceiling_score(trials, masks), expected, atol=ATOL[dtype]
  )


def test_ceiling_of_pure_noise_stays_near_zero():
  rng = np.random.default_rng(5)
  noise = rng.standard_normal((10, 300, 30)).astype(np.float32) + 50
  masks = split_half_masks(10, n_splits=10, key=jax.random.key(5))

  def run(trials):
    return np.asarray(
      bootstrap.ceiling_bootstrap(
        trials, masks, n_boot=100, key=KEY, resample_neuroids=True
      )
    )

  samples = run(noise)
  # Resampling repetitions into both halves would put this near 0.5.
  assert abs(samples.mean()) < 0.05 and samples.std() < 0.1
  assert np.quantile(samples, 0.025) < 0 < np.quantile(samples, 0.975)
  reliable = _trials(np.float32, n_reps=10, n_stimuli=300, n_neuroids=30)
  assert np.all(run(reliable) > 0.8)


def test_ceiling_chunks_and_traces(monkeypatch):
  trials = _trials(np.float32, n_reps=5, n_stimuli=21, n_neuroids=4, seed=6)
  masks = split_half_masks(5, n_splits=3, key=jax.random.key(6))
  traces = []
  original = bootstrap._ceiling_stack
  monkeypatch.setattr(
    bootstrap, "_ceiling_stack", lambda *a: traces.append(1) or original(*a)
  )
  runs = [
    np.asarray(
      bootstrap.ceiling_bootstrap(trials, masks, n_boot=200, key=KEY, chunk_size=c)
    )
    for c in (128, 128, 1000)  # 2 chunks of 128, 1 of 256
  ]
  assert len(traces) == 2  # a repeat call reuses its trace
  np.testing.assert_array_equal(runs[0], runs[1])
  np.testing.assert_array_equal(runs[0], runs[2])


# ---------------------------------------------------------------------------
# ceiled score and jackknives


def test_ceiled_bootstrap_pairs_resamples():
  score = np.array([0.5, 0.4, 0.6])
  ceiling = np.array([0.9, 0.8, 1.0])
  np.testing.assert_allclose(
    bootstrap.ceiled_bootstrap(score, ceiling), score**2 / ceiling
  )
  np.testing.assert_allclose(
    bootstrap.ceiled_bootstrap(score, ceiling, "squared_ratio"),
    (score / ceiling) ** 2,
  )
  with pytest.raises(ValueError, match="ceiling_samples must have the shape"):
    bootstrap.ceiled_bootstrap(score, ceiling[:2])
  with pytest.raises(ValueError, match="normalization must be one of"):
    bootstrap.ceiled_bootstrap(score, ceiling, "r_over_c")


@pytest.mark.parametrize("dtype", DTYPES)
def test_jackknife_test_set_matches_deleting_data(dtype):
  predictions, targets = _predictions(dtype, n_test=8, n_neuroids=5, seed=2)
  stimuli, neuroids = bootstrap.jackknife_test_set(
    predictions, targets, resample_neuroids=True
  )
  assert stimuli.shape == (3, 8) and neuroids.shape == (5,)
  n_splits, n_test, n_neuroids = targets.shape
  everyone = np.arange(n_neuroids)
  for s in range(n_splits):
    for i in range(n_test):
      counts = np.ones((n_splits, n_test), int)
      counts[s, i] = 0
      expected = _score(predictions, targets, counts, everyone)
      np.testing.assert_allclose(stimuli[s, i], expected, atol=ATOL[dtype])
  ones = np.ones((n_splits, n_test), int)
  for j in range(n_neuroids):
    expected = _score(predictions, targets, ones, np.delete(everyone, j))
    np.testing.assert_allclose(neuroids[j], expected, atol=ATOL[dtype])
  (only,) = bootstrap.jackknife_test_set(predictions, targets)
  np.testing.assert_array_equal(only, stimuli)


def test_jackknife_ceiling_matches_deleting_data():
  trials = _trials(np.float64, n_stimuli=12, seed=8)
  masks = split_half_masks(6, n_splits=3, key=jax.random.key(8))
  stimuli, neuroids = bootstrap.jackknife_ceiling(trials, masks, resample_neuroids=True)
  everyone = np.arange(trials.shape[2])
  for i in range(12):
    counts = np.ones(12, int)
    counts[i] = 0
    expected = _ceiling(trials, masks, counts, everyone)
    np.testing.assert_allclose(stimuli[i], expected, atol=1e-12)
  for j in everyone:
    expected = _ceiling(trials, masks, np.ones(12, int), np.delete(everyone, j))
    np.testing.assert_allclose(neuroids[j], expected, atol=1e-12)


def test_ceiled_jackknife_groups():
  score_jk = (np.full((2, 3), 0.5), np.array([0.4, 0.6]))
  ceiling_jk = (np.array([0.8, 0.9, 1.0]), np.array([0.7, 0.9]))
  shared = bootstrap.ceiled_jackknife(0.5, 0.9, score_jk, ceiling_jk)
  assert len(shared) == 3
  np.testing.assert_allclose(shared[0], 0.25 / 0.9)
  np.testing.assert_allclose(shared[1], 0.25 / ceiling_jk[0])
  np.testing.assert_allclose(shared[2], score_jk[1] ** 2 / ceiling_jk[1])
  separate = bootstrap.ceiled_jackknife(
    0.5, 0.9, score_jk, ceiling_jk, shared_neuroids=False
  )
  assert len(separate) == 4
  assert len(bootstrap.ceiled_jackknife(0.5, 0.9, score_jk[:1], ceiling_jk[:1])) == 2


# ---------------------------------------------------------------------------
# devices

_DEVICE_SCRIPT = """
import os, sys
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
import jax
jax.config.update("jax_enable_x64", True)
import numpy as np
from jaxscore.kernels import bootstrap
assert len(jax.local_devices()) == 8, jax.local_devices()
data = np.load(sys.argv[1])
key = jax.random.key(7)
score = bootstrap.test_set_bootstrap(
  data["predictions"], data["targets"], n_boot=24, key=key,
  resample_neuroids=True, chunk_size=10)
assert len(score.sharding.device_set) == 8, score.sharding
ceiling = bootstrap.ceiling_bootstrap(
  data["trials"], data["masks"], n_boot=12, key=key, resample_neuroids=True,
  chunk_size=5)
np.savez(sys.argv[2], score=np.asarray(score), ceiling=np.asarray(ceiling))
"""


def test_eight_fake_devices_give_the_same_numbers(tmp_path):
  # The child must set XLA_FLAGS before it imports jax; this process has
  # initialised jax with one device already.
  predictions, targets = _predictions(np.float32)
  trials, masks = _ceiling_data(np.float32)
  inputs, outputs = tmp_path / "in.npz", tmp_path / "out.npz"
  np.savez(inputs, predictions=predictions, targets=targets, trials=trials, masks=masks)
  script = tmp_path / "eight.py"
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
  eight = np.load(outputs)
  np.testing.assert_array_equal(eight["score"], _run(predictions, targets, True))
  ceiling = bootstrap.ceiling_bootstrap(
    trials,
    masks,
    n_boot=CEILING_BOOT,
    key=KEY,
    resample_neuroids=True,
    chunk_size=CEILING_CHUNK,
  )
  np.testing.assert_array_equal(eight["ceiling"], ceiling)


def test_shard_resamples_with_one_device_is_a_call():
  out = bootstrap.shard_resamples(lambda i, x: i * x, np.arange(4), 3)
  np.testing.assert_array_equal(out, [0, 3, 6, 9])


def test_multiply_high_is_exact():
  rng = np.random.default_rng(11)
  bits = rng.integers(0, 2**32, 1000, dtype=np.uint64)
  bits[:3] = [0, 1, 2**32 - 1]
  for n in (1, 7, 640, 2**16 + 3, 2**32 - 1):
    got = np.asarray(bootstrap._mulhi(jax.numpy.asarray(bits, np.uint32), n))
    np.testing.assert_array_equal(got, (bits * np.uint64(n)) >> np.uint64(32))
