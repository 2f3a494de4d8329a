import numpy as np
import pytest

from jaxscore import commitment, scoring
from jaxscore.benchmark import NeuralBenchmark
from jaxscore.data import assembly as assembly_lib
from jaxscore.data.stimuli import StimulusSet

N_OBJECTS, PER_OBJECT, N_NEUROIDS = 4, 25, 8


def _benchmark(seed=0):
  """100 stimuli in 4 objects; neuroids driven by 6 latent features."""
  rng = np.random.default_rng(seed)
  n = N_OBJECTS * PER_OBJECT
  latent = rng.standard_normal((n, 6))
  signal = latent @ rng.standard_normal((6, N_NEUROIDS))
  ids = [f"s{i:03d}" for i in range(n)]
  objects = np.repeat([f"o{k}" for k in range(N_OBJECTS)], PER_OBJECT)
  trials = np.concatenate(
    [signal + 0.3 * rng.standard_normal(signal.shape) for _ in range(2)]
  )
  assembly = assembly_lib.make_assembly(
    trials,
    presentation={
      "stimulus_id": ids * 2,
      "repetition": [0] * n + [1] * n,
      "object_name": np.concatenate([objects, objects]),
    },
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
    assembly=assembly,
    stimuli=stimuli,
    visual_degrees=8,
    regression=scoring.Regression(kind="pls", n_components=6),
    has_ceiling=False,
  )
  return benchmark, latent, rng


def test_partition_is_disjoint_complete_stratified_and_seeded():
  labels = np.repeat(np.arange(5), [10, 11, 12, 13, 14])
  p = commitment.partition(len(labels), labels=labels, seed=3)
  assert np.intersect1d(p.commitment, p.scoring).size == 0
  assert np.array_equal(np.union1d(p.commitment, p.scoring), np.arange(len(labels)))
  for label in range(5):
    n_label = int(np.sum(labels == label))
    assert np.sum(labels[p.commitment] == label) == n_label // 2
  again = commitment.partition(len(labels), labels=labels, seed=3)
  other = commitment.partition(len(labels), labels=labels, seed=4)
  assert np.array_equal(p.commitment, again.commitment)
  assert not np.array_equal(p.commitment, other.commitment)


def test_half_splits_stay_inside_their_half():
  benchmark, _, _ = _benchmark()
  halves = commitment.benchmark_partition(benchmark, seed=0)
  for half in (halves.commitment, halves.scoring):
    splits = commitment.half_splits(benchmark, half, seed=0)
    assert splits.train.shape[0] == benchmark.n_splits
    used = np.concatenate([np.ravel(splits.train), np.ravel(splits.test)])
    assert np.isin(used, half).all()
    for train, test in zip(splits.train, splits.test, strict=True):
      assert np.intersect1d(train, test).size == 0
      assert len(train) + len(test) == len(half)


def test_layer_is_chosen_on_the_commitment_half_only():
  benchmark, latent, rng = _benchmark()
  halves = commitment.benchmark_partition(benchmark, seed=0)
  noise = rng.standard_normal(latent.shape)
  # "a" carries the signal on the commitment half only, "b" on the scoring
  # half only: a leak-free commitment picks "a" and then scores it poorly.
  a = noise.copy()
  a[halves.commitment] = latent[halves.commitment]
  b = noise.copy()
  b[halves.scoring] = latent[halves.scoring]
  features = {"a": a, "b": b}
  result = commitment.commit(
    benchmark, features, stimulus_ids=benchmark.stimulus_ids, seed=0
  )
  assert result.layer == "a"
  chosen = {s.layer: s.raw.center for s in result.selection.layers}
  assert chosen["a"] > 0.8 > 0.3 > chosen["b"]
  (reported,) = result.score.layers
  assert reported.layer == "a" and reported.raw.center < 0.3
  # the reported score is exactly the layer's score with scoring-half splits
  direct = benchmark.score_features(
    {"a": a},
    stimulus_ids=benchmark.stimulus_ids,
    splits=commitment.half_splits(benchmark, halves.scoring, seed=0),
  )
  assert reported.raw.center == pytest.approx(direct.layers[0].raw.center)
  assert "committed on 48 stimuli, scored on 52 disjoint" in result.describe()


def test_too_few_stimuli_or_bad_labels_are_refused():
  with pytest.raises(ValueError, match="n_stimuli must be at least 12"):
    commitment.partition(5)
  with pytest.raises(ValueError, match=r"labels must have shape \(20,\)"):
    commitment.partition(20, labels=np.zeros(19))
