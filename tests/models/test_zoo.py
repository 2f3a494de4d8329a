"""The random-init zoo: layer shapes, depth order, parameter counts, determinism.

Shapes come from ``jax.eval_shape`` (no weights drawn, no forward run), so
every architecture is checked in seconds; only the small models are drawn
and run on CPU, and ResNet-50 and CORnet-S once, in a slow test.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import models
from models import zoo

N_IMAGES = 2


def _resnet_shapes(depths, widths, expansion):
  shapes = {"conv1": (112, 112, 64)}
  for stage, (depth, width) in enumerate(zip(depths, widths, strict=True)):
    side = 56 // 2**stage
    for index in range(depth):
      shapes[f"layer{stage + 1}.{index}"] = (side, side, width * expansion)
  shapes["avgpool"] = (widths[-1] * expansion,)
  shapes["fc"] = (1000,)
  return shapes


_CORNET_AREAS = {
  "V1": (56, 56, 64),
  "V2": (28, 28, 128),
  "V4": (14, 14, 256),
  "IT": (7, 7, 512),
}

# Model -> ({readout layer: shape of one image's activations}, in depth order;
# number of trainable parameters, from the published architectures).
EXPECTED = {
  "alexnet": (
    {
      "features.2": (27, 27, 64),
      "features.5": (13, 13, 192),
      "features.7": (13, 13, 384),
      "features.9": (13, 13, 256),
      "features.11": (13, 13, 256),
      "features.12": (6, 6, 256),
      "classifier.2": (4096,),
      "classifier.5": (4096,),
      "classifier.6": (1000,),
    },
    61_100_840,
  ),
  "vgg16": (
    {
      "features.4": (112, 112, 64),
      "features.9": (56, 56, 128),
      "features.16": (28, 28, 256),
      "features.23": (14, 14, 512),
      "features.30": (7, 7, 512),
      "classifier.1": (4096,),
      "classifier.4": (4096,),
      "classifier.6": (1000,),
    },
    138_357_544,
  ),
  "resnet18": (_resnet_shapes((2, 2, 2, 2), (64, 128, 256, 512), 1), 11_689_512),
  "resnet50": (_resnet_shapes((3, 4, 6, 3), (64, 128, 256, 512), 4), 25_557_032),
  "cornet_z": (
    {**_CORNET_AREAS, "decoder.avgpool": (512,), "decoder.linear": (1000,)},
    # 3*64*49 + 64*128*9 + 128*256*9 + 256*512*9 + 512*1000, plus biases
    2_071_656,
  ),
  "cornet_s": (
    {
      "V1": (56, 56, 64),
      "V2.t0": (28, 28, 128),
      "V2.t1": (28, 28, 128),
      "V2": (28, 28, 128),
      **{f"V4.t{t}": (14, 14, 256) for t in range(4)},
      "V4": (14, 14, 256),
      "IT.t0": (7, 7, 512),
      "IT.t1": (7, 7, 512),
      "IT": (7, 7, 512),
      "decoder.avgpool": (512,),
      "decoder.linear": (1000,),
    },
    53_416_616,
  ),
  "vit_tiny": (
    {
      "conv_proj": (14, 14, 192),
      **{
        f"encoder_layer_{i}.{token}": (192,)
        for i in range(6)
        for token in ("cls", "mean")
      },
      "encoder.ln": (192,),
      "heads.head": (1000,),
    },
    # patches 3*256*192+192, class token 192, positions 197*192, 6 layers of
    # 4*192*192+4*192 (attention) + 2*192*768+768+192 (MLP) + 4*192 (norms),
    # last norm 2*192, head 192*1000+1000
    3_048_232,
  ),
}
ZOO = sorted(EXPECTED)
SMALL = ("cornet_z", "vit_tiny")


def _n_parameters(params) -> int:
  return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(params))


@pytest.mark.parametrize("name", ZOO)
def test_layer_shapes_order_and_size(name):
  shapes, n_parameters = EXPECTED[name]
  model = zoo.abstract_model(models.MODELS[name])
  assert model.name == name
  assert model.image_size == 224
  assert model.layers == tuple(shapes)
  images = jax.ShapeDtypeStruct((N_IMAGES, 224, 224, 3), jnp.float32)
  out = jax.eval_shape(model.apply, model.variables, images)
  assert set(out) == set(model.layers)
  for layer, shape in shapes.items():
    assert out[layer].shape == (N_IMAGES, *shape), layer
    assert out[layer].dtype == jnp.float32, layer
  assert _n_parameters(model.variables["params"]) == n_parameters


def test_resnet50_feature_counts():
  shapes, _ = EXPECTED["resnet50"]
  counts = {layer: math.prod(shape) for layer, shape in shapes.items()}
  assert counts["conv1"] == counts["layer1.0"] == 802_816
  assert counts["layer2.3"] == 401_408
  assert counts["layer3.5"] == 200_704
  assert counts["layer4.2"] == 100_352
  assert counts["avgpool"] == 2048


@pytest.mark.parametrize("name", ZOO)
def test_needs_a_key(name):
  with pytest.raises(ValueError, match=f"{name} is randomly initialised"):
    models.load_model(name)


@pytest.mark.parametrize("name", ["alexnet", "vgg16", "vit_tiny"])
def test_fixed_size_models_refuse_other_sizes(name):
  model = zoo.abstract_model(models.MODELS[name])
  images = jax.ShapeDtypeStruct((1, 192, 192, 3), jnp.float32)
  with pytest.raises(ValueError, match=r"224, 224, 3\), got \(1, 192, 192, 3\)"):
    jax.eval_shape(model.apply, model.variables, images)


def _images(n_images: int, seed: int = 0) -> jnp.ndarray:
  rng = np.random.default_rng(seed)
  return jnp.asarray(rng.normal(size=(n_images, 224, 224, 3)), jnp.float32)


def _assert_runs(model, n_images: int):
  out = jax.jit(model.apply)(model.variables, _images(n_images))
  shapes, _ = EXPECTED[model.name]
  for layer, shape in shapes.items():
    values = np.asarray(out[layer])
    assert values.shape == (n_images, *shape), layer
    assert np.isfinite(values).all(), layer
    assert values.std() > 0, layer  # not a dead layer
    # different images give different activations
    assert not np.array_equal(values[0], values[-1]) or n_images == 1, layer
  return out


@pytest.mark.parametrize("name", SMALL)
def test_random_init_is_deterministic_and_runs(name):
  model = models.load_model(name, key=jax.random.key(0))
  again = models.load_model(name, key=jax.random.key(0))
  other = models.load_model(name, key=jax.random.key(1))
  same = jax.tree.map(np.array_equal, model.variables, again.variables)
  assert all(jax.tree.leaves(same))
  # every randomly drawn leaf differs; constant ones (zero biases, unit
  # norm scales, batch norm statistics) agree
  drawn = jax.tree.leaves(
    jax.tree.map(lambda a: bool(np.ptp(np.asarray(a)) > 0), model.variables)
  )
  differ = jax.tree.leaves(
    jax.tree.map(
      lambda a, b: not np.array_equal(a, b), model.variables, other.variables
    )
  )
  assert any(drawn)
  assert differ == drawn
  leaves = jax.tree.leaves(model.variables)
  assert all(leaf.dtype == jnp.float32 for leaf in leaves)
  _assert_runs(model, N_IMAGES)


@pytest.mark.slow
def test_large_models_run_once():
  """ResNet-50 and CORnet-S drawn and run on one image (~40 s on 2 cores)."""
  resnet = models.load_model("resnet50", key=jax.random.key(0))
  _assert_runs(resnet, 1)
  cornet = models.load_model("cornet_s", key=jax.random.key(0))
  out = _assert_runs(cornet, 1)
  for area, last in (("V2", "V2.t1"), ("V4", "V4.t3"), ("IT", "IT.t1")):
    np.testing.assert_array_equal(out[area], out[last])
  assert not np.array_equal(out["V4.t0"], out["V4.t1"])
