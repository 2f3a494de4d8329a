import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxscore import activations, scoring
from jaxscore import cache as cache_lib
from jaxscore import store as store_lib
from jaxscore.benchmark import NeuralBenchmark
from jaxscore.data import assembly as assembly_lib
from jaxscore.data.stimuli import StimulusSet
from jaxscore.model import VisionModel
from models.tiny import tiny_cnn

KEY_FIELDS = dict(
  params_hash="p" * 64,
  image_size=32,
  mean=(0.485, 0.456, 0.406),
  std=(0.229, 0.224, 0.225),
  model_degrees=8.0,
  source_degrees=8.0,
  stimulus_ids=("a", "b", "c"),
  images_hash="i" * 64,
  layers=("conv1", "pool"),
  code_version=1,
)
CHANGES = dict(
  params_hash="q" * 64,
  image_size=64,
  mean=(0.5, 0.456, 0.406),
  std=(0.229, 0.224, 0.3),
  model_degrees=10.0,
  source_degrees=4.0,
  stimulus_ids=("a", "c", "b"),
  images_hash="j" * 64,
  layers=("conv1",),
  code_version=2,
)


@pytest.mark.parametrize("field", sorted(CHANGES))
def test_every_input_of_the_key_changes_it(field):
  base = cache_lib.cache_key(**KEY_FIELDS)
  assert base == cache_lib.cache_key(**KEY_FIELDS)
  assert base != cache_lib.cache_key(**(KEY_FIELDS | {field: CHANGES[field]}))


def _images(n=10, seed=0):
  rng = np.random.default_rng(seed)
  return tuple(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8) for _ in range(n))


def _key(model, images, layers):
  ids = [f"s{i}" for i in range(len(images))]
  return cache_lib.model_key(
    model,
    params_hash=store_lib.params_hash(model.variables),
    source_degrees=8.0,
    stimulus_ids=ids,
    images_hash=StimulusSet("x", tuple(ids), images).content_hash(),
    layers=layers,
  )


def test_streamed_entry_equals_extract_and_is_reused(tmp_path):
  model = tiny_cnn(key=jax.random.key(0))
  images = _images()
  cache = cache_lib.ActivationCache(tmp_path)
  key = _key(model, images, model.layers)
  kwargs = dict(key=key, source_degrees=8.0, layers=model.layers, batch_size=4)
  assert not cache_lib.cached_activations(cache, model, images, **kwargs)
  expected = activations.extract(model, images, source_degrees=8.0, batch_size=4)
  assert cache.layers(key) == model.layers
  for layer in model.layers:
    values = cache.load(key, layer)
    assert isinstance(values, np.memmap) and not values.flags.writeable
    np.testing.assert_array_equal(values, expected[layer])
  files = sorted(cache.path(key).iterdir())
  mtimes = [os.stat(f).st_mtime_ns for f in files]
  assert cache_lib.cached_activations(cache, model, images, **kwargs)  # a hit
  assert [os.stat(f).st_mtime_ns for f in files] == mtimes
  assert [p.name for p in tmp_path.iterdir()] == [key]  # no temporaries
  with pytest.raises(ValueError, match="has no layer 'conv9'"):
    cache.load(key, "conv9")
  # new weights under the same name, or other pixels: another entry
  other = tiny_cnn(key=jax.random.key(1))
  assert _key(other, images, model.layers) != key
  assert _key(model, _images(seed=1), model.layers) != key


def test_a_failed_fill_leaves_no_entry_and_names_the_layer(tmp_path):
  model = VisionModel(
    name="broken",
    apply=lambda variables, images: {"x": images * variables["scale"]},
    variables={"scale": jnp.float32(np.nan)},
    layers=("x",),
    image_size=8,
  )
  cache = cache_lib.ActivationCache(tmp_path)
  with pytest.raises(ValueError, match="layer 'x' of model 'broken'"):
    cache_lib.cached_activations(
      cache, model, _images(3), key="k" * 64, source_degrees=8.0, layers=("x",)
    )
  assert not cache.contains("k" * 64)
  assert list(tmp_path.iterdir()) == []


def test_extract_into_refuses_a_wrong_allocation():
  model = tiny_cnn(key=jax.random.key(0))
  with pytest.raises(ValueError, match="expected \\(3, 64\\)"):
    activations.extract_into(
      model,
      _images(3),
      source_degrees=8.0,
      layers=("pool",),
      allocate=lambda name, shape: np.zeros((3, 5), np.float32),
    )


def _toy_benchmark(n_stimuli=60, n_neuroids=5, seed=0):
  """n_stimuli stimuli, two repetitions, no object labels."""
  rng = np.random.default_rng(seed)
  ids = [f"s{i:03d}" for i in range(n_stimuli)]
  signal = rng.standard_normal((n_stimuli, n_neuroids))
  trials = np.concatenate([signal + rng.standard_normal(signal.shape) for _ in "ab"])
  assembly = assembly_lib.make_assembly(
    trials,
    presentation={
      "stimulus_id": ids * 2,
      "repetition": [0] * n_stimuli + [1] * n_stimuli,
    },
    neuroid={
      "neuroid_id": [f"n{k}" for k in range(n_neuroids)],
      "region": ["V4"] * n_neuroids,
    },
  )
  images = tuple(np.zeros((4, 4, 3), np.uint8) for _ in ids)
  benchmark = NeuralBenchmark(
    identifier="toy",
    version=1,
    assembly=assembly,
    stimuli=StimulusSet("toy", tuple(ids), images),
    visual_degrees=8,
    regression=scoring.Regression(kind="ridge"),
    stratify_by=None,
  )
  return benchmark, signal, rng


def test_wide_streamed_layer_scores_through_the_stimulus_gram(tmp_path, monkeypatch):
  # 100,000 features: a features x features float32 matrix would take 40 GB,
  # so this can only finish on the stimulus x stimulus path.
  benchmark, signal, rng = _toy_benchmark()
  n_features = 100_000
  mixing = rng.standard_normal((signal.shape[1], n_features)).astype(np.float32)
  cache = cache_lib.ActivationCache(tmp_path)

  def fill(allocate):
    rows = allocate("wide", (benchmark.n_stimuli, n_features))
    for start in range(0, benchmark.n_stimuli, 16):  # batch by batch
      block = signal[start : start + 16] @ mixing
      rows[start : start + 16] = block + rng.standard_normal(block.shape)

  cache.write("w" * 64, fill, layers=("wide",))
  streamed = cache.load("w" * 64, "wide")
  grams = []
  original = scoring.stimulus_gram
  monkeypatch.setattr(
    scoring, "stimulus_gram", lambda x, **kw: grams.append(x.shape) or original(x, **kw)
  )
  from_disk = benchmark.score_features(
    {"wide": streamed}, stimulus_ids=benchmark.stimulus_ids
  )
  in_memory = benchmark.score_features(
    {"wide": np.array(streamed)}, stimulus_ids=benchmark.stimulus_ids
  )
  assert grams == [(60, n_features)] * 2
  np.testing.assert_array_equal(from_disk.layers[0].r, in_memory.layers[0].r)
  assert from_disk.layers[0].raw.center > 0.5


def test_row_file_writes_blocks_in_any_order(tmp_path):
  values = np.random.default_rng(1).standard_normal((10, 6)).astype(np.float32)
  rows = cache_lib._RowFile(tmp_path / "x.npy", (10, 6))
  rows[6:10] = values[6:]
  rows[0:6] = values[:6].astype(np.float64)  # stored as float32
  with pytest.raises(ValueError, match=r"rows 2:4 must have shape \(2, 6\)"):
    rows[2:4] = values[:3]
  with pytest.raises(TypeError, match="by slice"):
    rows[3] = values[3]
  rows.close()
  loaded = np.load(tmp_path / "x.npy", mmap_mode="r")
  assert loaded.dtype == np.float32 and loaded.shape == (10, 6)
  np.testing.assert_array_equal(loaded, values)
