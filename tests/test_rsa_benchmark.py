"""RSABenchmark: raw scores, the inter-subject ceiling, alignment, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.spatial.distance
import scipy.stats
import xarray as xr

import models
from benchmarks import kriegeskorte2008
from jaxscore.data.stimuli import StimulusSet
from jaxscore.rsa_benchmark import RSABenchmark

N_STIMULI = 16


def _ids(n=N_STIMULI):
  return tuple(f"s{i:02d}" for i in range(n))


def _stimuli(ids):
  images = tuple(np.full((4, 4, 3), i, np.uint8) for i in range(len(ids)))
  return StimulusSet("synthetic", tuple(ids), images)


def _rdm(features, metric="correlation"):
  features = np.asarray(features, np.float64)
  return scipy.spatial.distance.squareform(
    scipy.spatial.distance.pdist(features, metric)
  )


def _upper(matrix):
  return scipy.spatial.distance.squareform(matrix, checks=False)


def _spearman(a, b):
  return scipy.stats.spearmanr(_upper(a), _upper(b))[0]


def _benchmark(rdms, **kwargs):
  ids = kwargs.pop("stimulus_ids", _ids(np.shape(rdms)[-1]))
  return RSABenchmark(
    identifier="synthetic",
    version=1,
    rdms=rdms,
    stimulus_ids=ids,
    stimuli=kwargs.pop("stimuli", _stimuli(ids)),
    visual_degrees=8.0,
    **kwargs,
  )


@pytest.fixture(scope="module")
def population():
  """True features, and 5 subjects who see them through independent noise."""
  rng = np.random.default_rng(0)
  truth = rng.standard_normal((N_STIMULI, 12))
  subjects = np.stack(
    [_rdm(truth + 1.5 * rng.standard_normal(truth.shape)) for _ in range(5)]
  )
  return truth, subjects


def test_features_that_generate_the_rdm_score_one():
  rng = np.random.default_rng(1)
  features = rng.standard_normal((N_STIMULI, 9))
  score = _benchmark(_rdm(features)).score_features(
    {"layer": features}, stimulus_ids=_ids()
  )
  (layer,) = score.layers
  assert layer.raw == pytest.approx(1, abs=1e-6)
  assert layer.group == pytest.approx(1, abs=1e-6)
  assert score.ceiling is None and layer.ceiled is None
  assert "No ceiling" in score.notes[0]
  assert score.metric == "rsa-spearman"
  # CKA of Euclidean RDMs is plain linear CKA: identical features give 1.
  cka = _benchmark(_rdm(features, "euclidean"), metric="cka", rdm_metric="euclidean")
  assert cka.score_features(features, stimulus_ids=_ids()).layers[
    0
  ].raw == pytest.approx(1, abs=1e-5)


def test_ceiling_matches_the_nili_bounds(population):
  _, subjects = population
  ceiling = _benchmark(subjects).ceiling
  mean = subjects.mean(0)
  upper = [_spearman(s, mean) for s in subjects]
  lower = [
    _spearman(s, np.delete(subjects, i, axis=0).mean(0)) for i, s in enumerate(subjects)
  ]
  np.testing.assert_allclose(ceiling.upper_per_subject, upper, atol=1e-5)
  np.testing.assert_allclose(ceiling.lower_per_subject, lower, atol=1e-5)
  assert ceiling.lower <= ceiling.upper
  assert ceiling.center == ceiling.upper


def test_raw_and_ceiled_scores(population):
  truth, subjects = population
  bench = _benchmark(subjects, subjects=tuple("ABCDE"))
  layer = bench.score_features({"truth": truth}, stimulus_ids=_ids()).layers[0]
  per_subject = [_spearman(_rdm(truth), s) for s in subjects]
  np.testing.assert_allclose(layer.per_subject, per_subject, atol=1e-5)
  assert layer.raw == pytest.approx(np.mean(per_subject), abs=1e-5)
  assert layer.group == pytest.approx(
    _spearman(_rdm(truth), subjects.mean(0)), abs=1e-5
  )
  assert layer.ceiled == pytest.approx(layer.raw / bench.ceiling.upper)
  # The true model beats the lower bound: normalised by it, the ceiled score
  # exceeds 1 and is reported as such, neither clipped nor squared.
  low = _benchmark(subjects, ceiling_bound="lower")
  ceiled = low.score_features({"truth": truth}, stimulus_ids=_ids()).layers[0].ceiled
  assert ceiled == pytest.approx(layer.raw / low.ceiling.lower)
  assert ceiled > 1


def test_jackknife_error_matches_leave_one_out(population):
  truth, subjects = population
  layer = _benchmark(subjects).score_features(truth, stimulus_ids=_ids()).layers[0]
  model = _rdm(truth)
  n = N_STIMULI
  loo = []
  for k in range(n):
    keep = np.delete(np.arange(n), k)
    sub = np.ix_(keep, keep)
    loo.append(np.mean([_spearman(model[sub], s[sub]) for s in subjects]))
  loo = np.array(loo)
  expected = np.sqrt((n - 1) / n * np.sum((loo - loo.mean()) ** 2))
  assert layer.error == pytest.approx(expected, rel=1e-4)
  assert np.isnan(
    _benchmark(subjects, jackknife=False)
    .score_features(truth, stimulus_ids=_ids())
    .layers[0]
    .error
  )


@pytest.mark.parametrize(
  "options",
  [
    dict(rsa_method="kendall_tau_a"),
    dict(rsa_method="pearson"),
    dict(metric="cka"),
    dict(metric="cka", cka_unbiased=False),
  ],
)
def test_other_metrics_score_within_bounds(population, options):
  truth, subjects = population
  score = _benchmark(subjects, **options).score_features(truth, stimulus_ids=_ids())
  layer = score.layers[0]
  assert -1 <= layer.raw <= 1 and np.isfinite(layer.error)
  assert score.ceiling.lower <= score.ceiling.upper


def test_float64_agrees_with_float32(population):
  truth, subjects = population
  bench = _benchmark(subjects)
  low = bench.score_features(truth, dtype=jnp.float32, stimulus_ids=_ids()).layers[0]
  high = bench.score_features(truth, dtype=jnp.float64, stimulus_ids=_ids()).layers[0]
  assert low.raw == pytest.approx(high.raw, abs=1e-5)


def test_shuffled_stimulus_ids_give_the_same_score(population):
  truth, subjects = population
  bench = _benchmark(subjects)
  reference = bench.score_features(truth, stimulus_ids=_ids()).layers[0].raw
  order = np.random.default_rng(2).permutation(N_STIMULI)
  ids = [bench.stimulus_ids[i] for i in order]
  shuffled = bench.score_features(truth[order], stimulus_ids=ids).layers[0].raw
  assert shuffled == pytest.approx(reference, abs=1e-6)
  # A DataArray brings its ids; extra stimuli are ignored.
  extra = np.concatenate([truth[order], np.ones((2, 12))])
  array = xr.DataArray(
    extra,
    dims=("presentation", "unit"),
    coords={"stimulus_id": ("presentation", [*ids, "x", "y"])},
  )
  assert bench.score_features(array).layers[0].raw == pytest.approx(reference, abs=1e-6)


def test_feature_alignment_errors(population):
  truth, subjects = population
  bench = _benchmark(subjects)
  ids = list(bench.stimulus_ids)
  with pytest.raises(ValueError, match="1 of its 16 stimuli are missing"):
    bench.score_features(truth[1:], stimulus_ids=ids[1:])
  with pytest.raises(ValueError, match="need stimulus_ids naming"):
    bench.score_features(truth[1:])
  with pytest.raises(ValueError, match="duplicates"):
    bench.score_features(truth, stimulus_ids=[ids[0], *ids[:-1]])
  with pytest.raises(ValueError, match="entries for 16 rows"):
    bench.score_features(truth, stimulus_ids=ids[:-1])
  with pytest.raises(ValueError, match="NaN or infinite"):
    bench.score_features(np.full_like(truth, np.nan), stimulus_ids=ids)
  with pytest.raises(ValueError, match="features is empty"):
    bench.score_features({})


def test_a_constant_pattern_is_an_error_naming_the_layer(population):
  truth, subjects = population
  features = truth.copy()
  features[3] = 0.0
  with pytest.raises(ValueError, match=r"Layer 'relu' responds with a constant"):
    _benchmark(subjects).score_features({"relu": features}, stimulus_ids=_ids())


def test_the_constant_pattern_error_names_exactly_the_constant_stimuli(population):
  truth, subjects = population
  features = truth.copy()
  features[[3, 9]] = 1.0
  with pytest.raises(ValueError, match=r"to 2 stimuli, e\.g\. \['s03', 's09'\],"):
    _benchmark(subjects).score_features({"relu": features}, stimulus_ids=_ids())
  features[:] = 0.5  # no pattern varies: the RDM is NaN off its diagonal
  with pytest.raises(ValueError, match=r"to all, or all but one, of its 16"):
    _benchmark(subjects).score_features({"relu": features}, stimulus_ids=_ids())


def test_bad_rdms_and_settings_are_rejected(population):
  _, subjects = population
  asymmetric = subjects.copy()
  asymmetric[0, 0, 1] += 0.1
  diagonal = subjects.copy()
  diagonal[1, 2, 2] = 0.5
  nan = subjects.copy()
  nan[0, 0, 1] = nan[0, 1, 0] = np.nan
  cases = [
    (dict(rdms=asymmetric), "RDM 0 of synthetic has not symmetric"),
    (dict(rdms=diagonal), "RDM 1 of synthetic has a non-zero diagonal"),
    (dict(rdms=nan), "NaN or infinite"),
    (dict(rdms=subjects[:, :-1, :-1], stimulus_ids=_ids()), "must be"),
    (dict(rdms=subjects, subjects=("a", "b")), "names 2 RDMs"),
    (dict(rdms=subjects, metric="dist"), "metric of synthetic must be one of"),
    (dict(rdms=subjects, rsa_method="tau"), "rsa_method"),
    (dict(rdms=subjects, ceiling_bound="mid"), "ceiling_bound"),
    (dict(rdms=subjects, stimuli=_stimuli(_ids(10))), "have no image"),
  ]
  for kwargs, message in cases:
    with pytest.raises(ValueError, match=message):
      _benchmark(**kwargs)


@pytest.fixture(scope="module")
def human_it():
  return kriegeskorte2008.human_it("rsa")


def test_human_it_ceiling(human_it):
  ceiling = human_it.ceiling
  assert ceiling.lower == pytest.approx(0.3786, abs=2e-4)
  assert ceiling.upper == pytest.approx(0.6607, abs=2e-4)
  assert human_it.subjects == ("BE", "KO", "SN", "TI")
  assert kriegeskorte2008.monkey_it("rsa").ceiling is None
  with pytest.raises(ValueError, match="metric must be one of"):
    kriegeskorte2008.human_it("pls")


@pytest.mark.slow
def test_tiny_model_on_human_it_end_to_end(human_it):
  model = models.load_model("tiny_cnn", key=jax.random.key(0))
  score = human_it.score_model(model, layers=["conv3", "pool"])
  assert [s.layer for s in score.layers] == ["conv3", "pool"]
  for layer in score.layers:
    assert np.isfinite(layer.raw) and -1 <= layer.raw <= 1
    assert np.isfinite(layer.error) and layer.error > 0
    assert layer.ceiled == pytest.approx(layer.raw / score.ceiling.upper)
    assert layer.per_subject.shape == (4,)
