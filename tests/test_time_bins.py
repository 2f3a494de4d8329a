"""Time-binned recordings: a score and a ceiling per bin."""

import json

import numpy as np
import pytest
import xarray as xr

from jaxscore import results, time_bins
from jaxscore.benchmark import NeuralBenchmark
from jaxscore.data.stimuli import StimulusSet

N_STIMULI, N_NEUROIDS, N_REPS, N_FEATURES = 40, 6, 4, 5
NOISE = (0.3, 1.0, 3.0)  # per bin: the later the bin, the noisier the trials


@pytest.fixture(scope="module")
def planted():
  """Bin b's neuroids are linear in feature set b, with noise NOISE[b]."""
  rng = np.random.default_rng(0)
  features = {f"block.t{b}": rng.normal(size=(N_STIMULI, N_FEATURES)) for b in range(3)}
  bins = []
  for b, noise in enumerate(NOISE):
    signal = features[f"block.t{b}"] @ rng.normal(size=(N_FEATURES, N_NEUROIDS))
    bins.append(signal[None] + noise * rng.normal(size=(N_REPS, *signal.shape)))
  trials = np.stack(bins, axis=-1)  # (n_reps, n_stimuli, n_neuroids, n_bins)
  ids = [f"s{k:02d}" for k in range(N_STIMULI)]
  assembly = xr.DataArray(
    trials.reshape(N_REPS * N_STIMULI, N_NEUROIDS, 3),
    dims=("presentation", "neuroid", "time_bin"),
    coords={
      "stimulus_id": ("presentation", np.tile(ids, N_REPS)),
      "repetition": ("presentation", np.repeat(np.arange(N_REPS), N_STIMULI)),
      "neuroid_id": ("neuroid", [f"n{k}" for k in range(N_NEUROIDS)]),
      "region": ("neuroid", ["IT"] * N_NEUROIDS),
      "time_bin_start": ("time_bin", [70, 120, 170]),
      "time_bin_end": ("time_bin", [120, 170, 220]),
    },
  )
  image = np.zeros((4, 4, 3), np.uint8)
  stimuli = StimulusSet("fixture", tuple(ids), (image,) * N_STIMULI)
  benchmark = time_bins.TimeBinnedBenchmark(
    "fixture.IT-pls", 1, assembly, stimuli, 8.0, options={"stratify_by": None}
  )
  return benchmark, features, ids, assembly


def test_each_bin_is_best_fit_by_its_own_features(planted):
  benchmark, features, ids, assembly = planted
  score = benchmark.score_features(features, stimulus_ids=ids, dtype="float64")
  assert score.bins == ("70-120", "120-170", "170-220")
  assert [s.benchmark for s in score.scores] == [
    "fixture.IT-pls.t70-120",
    "fixture.IT-pls.t120-170",
    "fixture.IT-pls.t170-220",
  ]
  for b, bin_score in enumerate(score.scores):
    assert bin_score.best.layer == f"block.t{b}"
    raws = {s.layer: s.raw.center for s in bin_score.layers}
    assert raws[f"block.t{b}"] > 0.6
    assert all(abs(v) < 0.4 for k, v in raws.items() if k != f"block.t{b}")
  ceilings = [s.ceiling.summary.center for s in score.scores]
  assert ceilings[0] > ceilings[1] > ceilings[2]  # noisier bins, lower ceilings
  # the same splits everywhere, and each bin equals a benchmark on its slice
  for bin_score in score.scores[1:]:
    np.testing.assert_array_equal(bin_score.splits.test, score.scores[0].splits.test)
  single = NeuralBenchmark(
    "slice",
    1,
    assembly.isel(time_bin=2, drop=True),
    benchmark.stimuli,
    8.0,
    stratify_by=None,
  ).score_features(features, stimulus_ids=ids, dtype="float64")
  np.testing.assert_allclose(single.ceiling.values, score["170-220"].ceiling.values)
  np.testing.assert_allclose(single.layers[2].r, score.scores[2].layers[2].r)


def test_bins_are_put_in_time_order(planted):
  benchmark, features, ids, assembly = planted
  shuffled = assembly.isel(time_bin=[2, 0, 1])
  unsorted = time_bins.TimeBinnedBenchmark(
    "fixture.IT-pls", 1, shuffled, benchmark.stimuli, 8.0, {"stratify_by": None}
  )
  assert unsorted.bins == benchmark.bins == ("70-120", "120-170", "170-220")
  assert unsorted.starts == (70.0, 120.0, 170.0)
  assert unsorted.ends == (120.0, 170.0, 220.0)
  got = unsorted.score_features(
    features, stimulus_ids=ids, layer_for_bin={0: "block.t0", "170-220": "block.t2"}
  )
  want = benchmark.score_features(
    features, stimulus_ids=ids, layer_for_bin={0: "block.t0", 2: "block.t2"}
  )
  assert got.bins == want.bins == ("70-120", "170-220")
  for a, b in zip(got.scores, want.scores, strict=True):
    assert a.benchmark == b.benchmark
    np.testing.assert_array_equal(a.layers[0].r, b.layers[0].r)
    np.testing.assert_array_equal(a.ceiling.values, b.ceiling.values)


def test_recurrent_time_steps_map_to_bins(planted, tmp_path):
  benchmark, features, ids, _ = planted
  mapping = time_bins.layers_by_time_step(["stem", *features])
  assert mapping == {0: ["block.t0"], 1: ["block.t1"], 2: ["block.t2"]}
  score = benchmark.score_features(features, stimulus_ids=ids, layer_for_bin=mapping)
  assert [[s.layer for s in b.layers] for b in score.scores] == [
    ["block.t0"],
    ["block.t1"],
    ["block.t2"],
  ]
  partial = benchmark.score_features(
    features, stimulus_ids=ids, layer_for_bin={"120-170": "block.t0"}
  )
  assert partial.bins == ("120-170",)
  assert abs(partial.scores[0].layers[0].raw.center) < 0.4

  path = results.write_time_binned(
    score, model="rnn", directory=tmp_path, run={"wall_seconds": 1.0}
  )
  summary = json.loads(path.read_text())
  assert [e["time_bin"] for e in summary["time_bins"]] == list(score.bins)
  for entry, bin_score in zip(summary["time_bins"], score.scores, strict=True):
    assert entry["raw"] == pytest.approx(bin_score.best.raw.center)
    assert entry["ceiling"] == pytest.approx(bin_score.ceiling.summary.center)
    per_bin = json.loads((tmp_path / entry["result"]).read_text())
    assert per_bin["benchmark"] == entry["benchmark"]
    assert (tmp_path / entry["benchmark"] / "rnn.nc").exists()


def test_bad_time_bin_input_is_named(planted):
  benchmark, features, ids, assembly = planted
  with pytest.raises(ValueError, match=r"bins 0\.\.2"):
    benchmark.score_features(features, stimulus_ids=ids, layer_for_bin={5: "block.t0"})
  with pytest.raises(ValueError, match="do not hold"):
    benchmark.score_features(features, stimulus_ids=ids, layer_for_bin={0: "fc"})
  with pytest.raises(ValueError, match=r"ends in '\.t<step>'"):
    time_bins.layers_by_time_step(["conv1", "fc"])
  with pytest.raises(ValueError, match="time_bin_end"):
    time_bins.bin_labels(assembly.drop_vars("time_bin_end"))
  with pytest.raises(ValueError, match="must be a DataArray with dims"):
    time_bins.TimeBinnedBenchmark(
      "x", 1, assembly.isel(time_bin=0), benchmark.stimuli, 8.0
    )
