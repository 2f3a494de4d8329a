"""ResNet-18 and ResNet-50 in Flax, randomly initialised, as torchvision's.

A stem (7x7 convolution, 64 channels, stride 2, padding 3, no bias; batch
norm; ReLU; 3x3 stride-2 max pool with padding 1) and four stages
``layer1`` ... ``layer4`` of residual blocks at 64, 128, 256 and 512 base
channels, the first block of stages 2-4 halving the resolution; then a global
average pool and a linear classifier. ResNet-18 has two basic blocks per
stage (two 3x3 convolutions); ResNet-50 has 3, 4, 6 and 3 bottleneck blocks
(1x1 reduce, 3x3, 1x1 expand to 4x the base channels) with the stride on the
3x3 convolution, as torchvision's (v1.5) puts it. A block whose shape changes
adds a projection of its input (``downsample``: 1x1 strided convolution and
batch norm). Every batch norm uses its running statistics (inference mode,
epsilon 1e-5).

Flax module names are torchvision's: ``conv1``, ``bn1``, ``layer<s>.<b>``
(holding ``conv1``, ``bn1`` ... and ``downsample.0``/``downsample.1``) and
``fc``.

Readout layers, in depth order: ``conv1`` (the stem convolution's own output,
before batch norm, as a hook on torchvision's ``conv1`` sees it), every block
``layer<s>.<b>``, ``avgpool`` and ``fc`` (1000 logits). For 224 x 224 inputs:
``conv1`` 112x112x64; ResNet-18 stages 56x56x64, 28x28x128, 14x14x256,
7x7x512, ``avgpool`` 512; ResNet-50 stages 56x56x256, 28x28x512, 14x14x1024,
7x7x2048, ``avgpool`` 2048.

Weights as torchvision draws them: convolutions He normal over fan-out,
batch-norm scale 1 and bias 0, running mean 0 and variance 1; the classifier
LeCun normal (torchvision's is a uniform of the same scale).

References:
  He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition",
  CVPR 2016.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax

from jaxscore.model import VisionModel
from models import zoo

N_CLASSES = 1000
WIDTHS = (64, 128, 256, 512)

_conv = functools.partial(nn.Conv, use_bias=False, kernel_init=zoo.he_normal_fan_out)
_bn = functools.partial(nn.BatchNorm, use_running_average=True, epsilon=1e-5)


def _pad(kernel: int) -> tuple[tuple[int, int], tuple[int, int]]:
  return ((kernel // 2, kernel // 2),) * 2


class BasicBlock(nn.Module):
  """Two 3x3 convolutions and a shortcut; ``width`` output channels."""

  width: int
  stride: int = 1

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    h = _conv(self.width, (3, 3), self.stride, _pad(3), name="conv1")(x)
    h = nn.relu(_bn(name="bn1")(h))
    h = _conv(self.width, (3, 3), 1, _pad(3), name="conv2")(h)
    h = _bn(name="bn2")(h)
    return nn.relu(h + _shortcut(x, self.width, self.stride))


class Bottleneck(nn.Module):
  """1x1 reduce, strided 3x3, 1x1 expand to ``4 * width``; and a shortcut."""

  width: int
  stride: int = 1

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    h = _conv(self.width, (1, 1), 1, 0, name="conv1")(x)
    h = nn.relu(_bn(name="bn1")(h))
    h = _conv(self.width, (3, 3), self.stride, _pad(3), name="conv2")(h)
    h = nn.relu(_bn(name="bn2")(h))
    h = _conv(4 * self.width, (1, 1), 1, 0, name="conv3")(h)
    h = _bn(name="bn3")(h)
    return nn.relu(h + _shortcut(x, 4 * self.width, self.stride))


def _shortcut(x: jax.Array, channels: int, stride: int) -> jax.Array:
  """The input, or its projection when the block changes its shape.

  Called inside a block's compact ``__call__``, so the projection's modules
  are the block's ``downsample.0`` and ``downsample.1``.
  """
  if stride == 1 and x.shape[-1] == channels:
    return x
  x = _conv(channels, (1, 1), stride, 0, name="downsample.0")(x)
  return _bn(name="downsample.1")(x)


class ResNet(nn.Module):
  """A torchvision ResNet of ``block`` with ``depths`` blocks per stage."""

  block: type[BasicBlock] | type[Bottleneck]
  depths: tuple[int, int, int, int]
  n_classes: int = N_CLASSES

  @nn.compact
  def __call__(self, images: jax.Array) -> dict[str, jax.Array]:
    """Args: images (n_images, height, width, 3), normalised."""
    zoo.check_images(images, "ResNet")
    layers = {}
    x = _conv(64, (7, 7), 2, _pad(7), name="conv1")(images)
    layers["conv1"] = x
    x = nn.relu(_bn(name="bn1")(x))
    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    for stage, (width, depth) in enumerate(zip(WIDTHS, self.depths, strict=True)):
      for index in range(depth):
        stride = 2 if stage > 0 and index == 0 else 1
        name = f"layer{stage + 1}.{index}"
        x = self.block(width, stride, name=name)(x)
        layers[name] = x
    x = x.mean(axis=(1, 2))
    layers["avgpool"] = x
    layers["fc"] = nn.Dense(self.n_classes, name="fc")(x)
    return layers


def readout_layers(depths: tuple[int, ...]) -> tuple[str, ...]:
  """``conv1``, every block, ``avgpool``, ``fc``: the readouts in depth order."""
  blocks = (
    f"layer{stage + 1}.{index}"
    for stage, depth in enumerate(depths)
    for index in range(depth)
  )
  return ("conv1", *blocks, "avgpool", "fc")


RESNET18_DEPTHS = (2, 2, 2, 2)
RESNET50_DEPTHS = (3, 4, 6, 3)


def resnet18(*, key: jax.Array | None) -> VisionModel:
  """A randomly initialised ResNet-18 (224 x 224 inputs, 11.7M parameters).

  Args:
    key: PRNG key the weights are drawn from; required.
  """
  module = ResNet(BasicBlock, RESNET18_DEPTHS)
  return zoo.random_model("resnet18", module, readout_layers(RESNET18_DEPTHS), key=key)


def resnet50(*, key: jax.Array | None) -> VisionModel:
  """A randomly initialised ResNet-50 (224 x 224 inputs, 25.6M parameters).

  Args:
    key: PRNG key the weights are drawn from; required.
  """
  module = ResNet(Bottleneck, RESNET50_DEPTHS)
  return zoo.random_model("resnet50", module, readout_layers(RESNET50_DEPTHS), key=key)
