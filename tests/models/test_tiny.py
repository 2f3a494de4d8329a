"""The tiny random CNN and the model table."""

import jax
import numpy as np
import pytest

import models
from models.tiny import tiny_cnn

SHAPES = {
  "conv1": (32, 32, 16),
  "conv2": (16, 16, 32),
  "conv3": (8, 8, 64),
  "pool": (64,),
}


def _images(n_images: int = 2, seed: int = 0) -> np.ndarray:
  rng = np.random.default_rng(seed)
  return rng.normal(size=(n_images, 32, 32, 3)).astype(np.float32)


def test_layers_have_their_shapes():
  model = tiny_cnn(key=jax.random.key(0))
  assert model.name == "tiny_cnn"
  assert model.image_size == 32
  assert model.layers == tuple(SHAPES)
  out = model.apply(model.variables, _images())
  assert set(out) == set(model.layers)
  for name, shape in SHAPES.items():
    assert out[name].shape == (2, *shape), name
    assert out[name].dtype == np.float32, name
    assert np.isfinite(out[name]).all(), name
  np.testing.assert_allclose(out["pool"], out["conv3"].mean(axis=(1, 2)), rtol=1e-6)


def test_same_key_same_model_other_key_other_model():
  images = _images()
  a = tiny_cnn(key=jax.random.key(1))
  b = tiny_cnn(key=jax.random.key(1))
  c = tiny_cnn(key=jax.random.key(2))
  jax.tree.map(np.testing.assert_array_equal, a.variables, b.variables)
  np.testing.assert_array_equal(
    a.apply(a.variables, images)["pool"], b.apply(b.variables, images)["pool"]
  )
  assert not np.allclose(
    a.variables["params"]["conv1"]["kernel"], c.variables["params"]["conv1"]["kernel"]
  )


def test_needs_a_key():
  with pytest.raises(ValueError, match="needs a PRNG key"):
    tiny_cnn(key=None)


def test_wrong_channel_count_raises():
  model = tiny_cnn(key=jax.random.key(0))
  with pytest.raises(ValueError, match=r"got \(2, 32, 32, 1\)"):
    model.apply(model.variables, np.zeros((2, 32, 32, 1), np.float32))


def test_jit_compiles_once_per_shape():
  model = tiny_cnn(key=jax.random.key(0))
  n_traces = 0

  def counted(variables, images):
    nonlocal n_traces
    n_traces += 1
    return model.apply(variables, images)

  forward = jax.jit(counted)
  for seed in range(3):
    jax.block_until_ready(forward(model.variables, _images(seed=seed)))
  assert n_traces == 1
  forward(model.variables, _images(n_images=3))
  assert n_traces == 2


def test_load_model_builds_from_the_table():
  model = models.load_model("tiny_cnn", key=jax.random.key(0))
  assert model.name == "tiny_cnn"
  assert set(models.MODELS) >= {
    "efficientnet_lite0",
    "efficientnet_lite1",
    "efficientnet_lite2",
    "tiny_cnn",
  }


def test_load_model_unknown_name_lists_valid_names():
  with pytest.raises(ValueError, match="Unknown model 'resnet9000'") as error:
    models.load_model("resnet9000")
  assert "efficientnet_lite0" in str(error.value)
  assert "tiny_cnn" in str(error.value)
