import dataclasses

import jax
import numpy as np
import pytest
import scipy.stats
import xarray as xr
from sklearn.cross_decomposition import PLSRegression
from sklearn.model_selection import StratifiedShuffleSplit

from jaxscore import kernels, scoring
from jaxscore.benchmark import NeuralBenchmark
from jaxscore.data import assembly as assembly_lib
from jaxscore.data.stimuli import StimulusSet

N_OBJECTS, PER_OBJECT, N_NEUROIDS, N_REPS = 4, 15, 6, 4


def _toy_benchmark(seed=0, regression="pls", **kwargs):
  """60 stimuli in 4 objects, 6 neuroids driven by 8 latent features."""
  rng = np.random.default_rng(seed)
  n_stimuli = N_OBJECTS * PER_OBJECT
  latent = rng.standard_normal((n_stimuli, 8))
  signal = latent @ rng.standard_normal((8, N_NEUROIDS)) + 5.0
  ids = [f"s{i:03d}" for i in range(n_stimuli)]
  objects = np.repeat([f"o{k}" for k in range(N_OBJECTS)], PER_OBJECT)
  rows, stim, reps, objs = [], [], [], []
  for i in range(n_stimuli):
    for rep in range(N_REPS - (i % 2)):  # odd stimuli miss their last trial
      rows.append(signal[i] + rng.standard_normal(N_NEUROIDS))
      stim.append(ids[i])
      reps.append(rep)
      objs.append(objects[i])
  trials = assembly_lib.make_assembly(
    np.array(rows),
    presentation={"stimulus_id": stim, "repetition": reps, "object_name": objs},
    neuroid={
      "neuroid_id": [f"n{k}" for k in range(N_NEUROIDS)],
      "region": ["V4"] * N_NEUROIDS,
    },
  )
  images = tuple(np.zeros((4, 4, 3), np.uint8) for _ in ids)
  stimuli = StimulusSet("toy", tuple(ids), images, {"object_name": objects})
  benchmark = NeuralBenchmark(
    identifier="toy",
    version=1,
    assembly=trials,
    stimuli=stimuli,
    visual_degrees=8,
    regression=scoring.Regression(kind=regression, n_components=5),
    **kwargs,
  )
  features = latent @ rng.standard_normal((8, 20)) + rng.standard_normal(
    (n_stimuli, 20)
  )
  return benchmark, features


def _reference_r(features, targets, splits, n_components):
  """scikit-learn PLS + scipy pearsonr, one split and one neuroid at a time."""
  out = np.empty((len(splits.train), targets.shape[1]))
  for s, (train, test) in enumerate(zip(splits.train, splits.test, strict=True)):
    pls = PLSRegression(
      n_components=n_components, scale=False, tol=1e-30, max_iter=5000
    )
    pls.fit(features[train], targets[train])
    prediction = pls.predict(features[test])
    for k in range(targets.shape[1]):
      out[s, k] = scipy.stats.pearsonr(prediction[:, k], targets[test, k])[0]
  return out


@pytest.mark.parametrize("dtype, tol", [("float64", 1e-6), ("float32", 2e-3)])
def test_cross_validated_r_matches_sklearn_and_scipy(dtype, tol):
  benchmark, features = _toy_benchmark()
  splits = benchmark.splits()
  r, _, _, n_components = scoring.cross_validated_r(
    features, benchmark.targets, splits, benchmark.regression, dtype=dtype
  )
  assert n_components == 5
  expected = _reference_r(features, benchmark.targets, splits, 5)
  np.testing.assert_allclose(r, expected, atol=tol)


def test_summary_is_median_over_neuroids_then_mean_and_sem_over_splits():
  values = np.random.default_rng(1).standard_normal((10, 7))
  values[3, 2] = np.nan
  summary = scoring.Summary.from_values(values)
  per_split = np.nanmedian(values, axis=1)
  assert summary.center == pytest.approx(per_split.mean())
  assert summary.error == pytest.approx(per_split.std(ddof=0) / np.sqrt(10))


def test_ceiling_matches_numpy_split_halves():
  benchmark, _ = _toy_benchmark()
  ceiling = benchmark.ceiling
  trials = assembly_lib.repetition_array(benchmark.assembly)
  key = jax.random.fold_in(jax.random.key(benchmark.seed), 1)
  masks = np.asarray(kernels.split_half_masks(N_REPS, n_splits=10, key=key))
  expected = np.empty((10, N_NEUROIDS))
  for s, half in enumerate(masks):
    a = np.nanmean(trials[half], axis=0)
    b = np.nanmean(trials[~half], axis=0)
    both = np.isfinite(a[:, 0]) & np.isfinite(b[:, 0])
    for k in range(N_NEUROIDS):
      r = scipy.stats.pearsonr(a[both, k], b[both, k])[0]
      expected[s, k] = 2 * r / (1 + r)
  np.testing.assert_allclose(ceiling.values, expected, atol=2e-5)
  assert ceiling.summary.center == pytest.approx(
    np.median(expected, 1).mean(), abs=2e-5
  )


def test_score_has_ceiled_value_r2_over_c_and_legacy_squared_ratio():
  benchmark, features = _toy_benchmark()
  ids = benchmark.stimulus_ids
  layer = benchmark.score_features({"f": features}, stimulus_ids=ids).layers[0]
  c = benchmark.ceiling.summary.center
  assert layer.ceiled == pytest.approx(layer.raw.center**2 / c)
  legacy, _ = _toy_benchmark(normalization="squared_ratio")
  old = legacy.score_features({"f": features}, stimulus_ids=ids).layers[0]
  assert old.ceiled == pytest.approx((old.raw.center / c) ** 2)


def test_shuffled_rows_with_ids_and_dataarrays_give_the_same_score():
  benchmark, features = _toy_benchmark()
  ids = benchmark.stimulus_ids
  base = benchmark.score_features(features, stimulus_ids=ids).layers[0].raw.center
  order = np.random.default_rng(2).permutation(len(features))
  ids = np.array(ids)[order]
  shuffled = benchmark.score_features(features[order], stimulus_ids=ids)
  assert shuffled.layers[0].raw.center == pytest.approx(base, abs=1e-6)
  extra = np.concatenate([features[order], features[:3]])
  array = xr.DataArray(
    extra,
    dims=("presentation", "neuroid"),
    coords={"stimulus_id": ("presentation", [*ids, "x1", "x2", "x3"])},
  )
  from_xr = benchmark.score_features(array)
  assert from_xr.layers[0].raw.center == pytest.approx(base, abs=1e-6)


def test_missing_stimuli_are_named():
  benchmark, features = _toy_benchmark()
  ids = list(benchmark.stimulus_ids)
  ids[4] = "stranger"
  with pytest.raises(ValueError, match=r"1 of its 60 stimuli are missing.*s004"):
    benchmark.score_features(features, stimulus_ids=ids)
  with pytest.raises(ValueError, match="need stimulus_ids naming"):
    benchmark.score_features(features)


def test_nan_features_name_the_layer():
  benchmark, features = _toy_benchmark()
  features[7, 3] = np.inf
  with pytest.raises(ValueError, match="layer 'conv2'"):
    benchmark.score_features(
      {"conv1": np.ones_like(features), "conv2": features},
      stimulus_ids=benchmark.stimulus_ids,
    )


def test_narrow_layer_uses_fewer_components_and_says_so():
  benchmark, features = _toy_benchmark()
  score = benchmark.score_features(
    {"narrow": features[:, :3]}, stimulus_ids=benchmark.stimulus_ids
  )
  layer = score.layers[0]
  assert layer.n_components == 3
  assert any("3 components instead of 5" in note for note in score.notes)
  expected = _reference_r(features[:, :3], benchmark.targets, benchmark.splits(), 3)
  np.testing.assert_allclose(layer.r, expected, atol=1e-6)


def test_dead_units_do_not_change_the_score():
  benchmark, features = _toy_benchmark()
  dead = np.concatenate([features, np.zeros((60, 5)), np.full((60, 2), 3.0)], axis=1)
  ids = benchmark.stimulus_ids
  with_dead = benchmark.score_features(dead, stimulus_ids=ids).layers[0].r
  without = benchmark.score_features(features, stimulus_ids=ids).layers[0].r
  assert np.isfinite(with_dead).all()
  # float32: the wider Gram is summed in another order (a few ulps of r)
  np.testing.assert_allclose(with_dead, without, atol=1e-5)


def test_constant_neuroid_is_refused_at_construction():
  benchmark, _ = _toy_benchmark()
  trials = benchmark.assembly.copy()
  trials.values[:, 2] = 4.0
  with pytest.raises(ValueError, match=r"respond identically.*n2"):
    NeuralBenchmark("toy", 1, trials, benchmark.stimuli, 8)


def test_splits_can_come_from_sklearn():
  benchmark, features = _toy_benchmark()
  splitter = StratifiedShuffleSplit(n_splits=5, train_size=0.9, random_state=1)
  train, test = zip(*splitter.split(features, benchmark.labels), strict=True)
  splits = kernels.Splits(np.array(train), np.array(test))
  ids = benchmark.stimulus_ids
  score = benchmark.score_features(features, stimulus_ids=ids, splits=splits)
  expected = _reference_r(features, benchmark.targets, splits, 5)
  np.testing.assert_allclose(score.layers[0].r, expected, atol=1e-6)
  pairs = list(zip(train, test, strict=True))  # as sklearn's split() yields
  from_pairs = benchmark.score_features(features, stimulus_ids=ids, splits=pairs)
  np.testing.assert_array_equal(from_pairs.layers[0].r, score.layers[0].r)
  bad = kernels.Splits(np.array(train), np.array(train)[:, :6])
  with pytest.raises(ValueError, match="in both its train and test"):
    benchmark.score_features(features, stimulus_ids=ids, splits=bad)
  with pytest.raises(TypeError, match="splits must be"):
    benchmark.score_features(features, stimulus_ids=ids, splits=5)


def test_ridge_benchmark_scores_finite_values():
  benchmark, features = _toy_benchmark(regression="ridge")
  score = benchmark.score_features(features, stimulus_ids=benchmark.stimulus_ids)
  assert score.layers[0].n_components == 0
  assert score.layers[0].alpha.shape == (10, N_NEUROIDS)
  grid = np.array(benchmark.regression.alphas)
  distance = np.abs(score.layers[0].alpha[..., None] / grid - 1).min(-1)
  assert distance.max() < 1e-6  # every chosen penalty is on the grid
  assert 0.3 < score.layers[0].raw.center < 1.0


@pytest.mark.parametrize("dtype, tol", [("float64", 1e-6), ("float32", 2e-3)])
def test_wide_layer_scores_through_the_stimulus_gram(dtype, tol):
  benchmark, features = _toy_benchmark()
  rng = np.random.default_rng(3)
  # 300 features for 60 stimuli, with a large offset like ReLU activations
  wide = features @ rng.standard_normal((20, 300)) + 100.0
  splits = benchmark.splits()
  r, *_ = scoring.cross_validated_r(
    wide, benchmark.targets, splits, benchmark.regression, dtype=dtype
  )
  expected = _reference_r(wide, benchmark.targets, splits, 5)
  np.testing.assert_allclose(r, expected, atol=tol)


def test_stimulus_gram_accumulates_blocks(monkeypatch):
  monkeypatch.setattr(scoring, "GRAM_BLOCK", 7)
  features = np.random.default_rng(4).standard_normal((9, 30)) + 50
  centred = features - features.mean(0)
  gram = scoring.stimulus_gram(features, dtype="float64")
  np.testing.assert_allclose(gram, centred @ centred.T, rtol=1e-12)


@pytest.mark.parametrize("cover", [True, False])
def test_gcv_ridge_downdated_moments_match_per_split_fits(cover):
  benchmark, features = _toy_benchmark()
  regression = scoring.Regression(kind="ridge", selection="gcv")
  splits = benchmark.splits()
  if not cover:  # train and test leave stimuli out: no downdating possible
    splits = kernels.Splits(splits.train[:, :40], splits.test)
  r, *_ = scoring.cross_validated_r(
    features, benchmark.targets, splits, regression, dtype="float64"
  )
  for s in range(len(splits.train)):
    tr, te = splits.train[s], splits.test[s]
    fit = kernels.ridge_gcv_fit_predict(
      features[tr], benchmark.targets[tr], features[te], np.array(regression.alphas)
    )
    expected = [
      scipy.stats.pearsonr(fit.predictions[:, k], benchmark.targets[te, k])[0]
      for k in range(N_NEUROIDS)
    ]
    np.testing.assert_allclose(r[s], expected, atol=1e-8)


def test_bad_feature_values_are_refused_with_the_layer_named():
  benchmark, features = _toy_benchmark()
  ids = benchmark.stimulus_ids
  with pytest.raises(ValueError, match="real numbers"):
    benchmark.score_features({"c": features.astype(complex)}, stimulus_ids=ids)
  with pytest.raises(ValueError, match="has no features"):
    benchmark.score_features({"empty": features[:, :0]}, stimulus_ids=ids)
  with pytest.raises(ValueError, match=r"layer 'huge'.*dtype=float64"):
    benchmark.score_features({"huge": features * 1e200}, stimulus_ids=ids)
  with pytest.raises(ValueError, match="dtype must be float32 or float64"):
    benchmark.score_features(features, stimulus_ids=ids, dtype="floaty")


def test_ridge_penalties_at_the_end_of_the_grid_are_noted():
  benchmark, features = _toy_benchmark(regression="ridge")
  benchmark.regression = scoring.Regression(kind="ridge", alphas=(1e3, 1e4, 1e5))
  score = benchmark.score_features(features, stimulus_ids=benchmark.stimulus_ids)
  assert any("smallest of the grid" in note for note in score.notes)


def test_constant_prediction_scores_zero_not_nan():
  pred = np.array([[1.0, 2.0], [1.0, 3.0], [1.0, 5.0]])
  target = np.array([[0.0, 1.0], [2.0, 2.0], [1.0, 4.0]])
  r = np.asarray(scoring._correlate(pred, target))
  assert r[0] == 0.0 and np.isfinite(r[1])
  bad = pred.copy()
  bad[1, 1] = np.inf
  assert np.isnan(np.asarray(scoring._correlate(bad, target))[1])


def test_a_layer_constant_over_every_stimulus_is_noted():
  benchmark, features = _toy_benchmark()
  constant = np.ones_like(features)
  score = benchmark.score_features(
    {"dead": constant, "live": features}, stimulus_ids=benchmark.stimulus_ids
  )
  dead = [note for note in score.notes if "constant over every stimulus" in note]
  assert len(dead) == 1 and "'dead'" in dead[0]
  assert score.layers[0].raw.center == 0.0
  assert score.best.layer == "live"


def test_best_layer_is_the_highest_raw_r_never_an_anticorrelated_one():
  benchmark, features = _toy_benchmark()
  ids = benchmark.stimulus_ids
  score = benchmark.score_features({"good": features}, stimulus_ids=ids)
  good = score.layers[0]
  # a layer whose held-out r is negative: r^2/c would rank it first
  flipped = dataclasses.replace(
    good,
    layer="anti",
    raw=scoring.Summary.from_values(-1.5 * good.r),
    ceiled=(1.5 * good.raw.center) ** 2 / score.ceiling.summary.center,
  )
  both = dataclasses.replace(score, layers=(flipped, good))
  assert flipped.ceiled > good.ceiled
  assert both.best.layer == "good"


def test_anticorrelated_layer_is_noted():
  benchmark, features = _toy_benchmark()
  rng = np.random.default_rng(4)
  noise = rng.standard_normal((len(features), 40))  # overfits: r near 0
  score = benchmark.score_features(
    {"noise": noise}, stimulus_ids=benchmark.stimulus_ids
  )
  layer = score.layers[0]
  noted = any("anticorrelates" in note for note in score.notes)
  assert noted == (layer.raw.center < 0)


def test_a_ceiling_without_enough_repeated_stimuli_is_refused():
  benchmark, _ = _toy_benchmark()
  trials = benchmark.assembly
  keep = (trials["repetition"].values == 0) | np.isin(
    trials["stimulus_id"].values, ["s000", "s002"]
  )
  sparse = NeuralBenchmark(
    "sparse", 1, trials[keep], benchmark.stimuli, 8, stratify_by="object_name"
  )
  with pytest.raises(ValueError, match=r"ceiling of sparse .* only 2 stimuli"):
    _ = sparse.ceiling
