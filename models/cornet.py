"""CORnet-Z and CORnet-S in Flax, randomly initialised, as the CORnet paper's.

Both map four areas of the primate ventral stream, V1, V2, V4 and IT, to four
blocks, followed by a ``decoder`` (global average pool and a linear readout
to 1000 classes). Shapes for 224 x 224 inputs: V1 56x56x64, V2 28x28x128, V4
14x14x256, IT 7x7x512.

CORnet-Z: each area is a convolution with bias (V1 7x7 stride 2; the others
3x3), ReLU, and a 3x3 stride-2 max pool with padding 1. Weights: Glorot
uniform, biases zero, as in the reference.

CORnet-S: V1 is a 7x7 stride-2 convolution, batch norm, ReLU, a 3x3 stride-2
max pool, a 3x3 convolution, batch norm and ReLU. V2, V4 and IT are one
recurrent block each, unrolled for 2, 4 and 2 time steps. The block first
maps its input to ``c`` channels with a 1x1 convolution; then at every step
``t`` it runs a bottleneck (1x1 to ``4c``, 3x3, 1x1 back to ``c``, each with
batch norm, the first two with ReLU), adds a skip and applies ReLU. At
``t = 0`` the 3x3 convolution has stride 2 and the skip is a 1x1 stride-2
convolution with batch norm; later steps reuse the same convolutions at
stride 1, with the step's own output as skip. Each step has its own batch
norms (``norm1_<t>``, ``norm2_<t>``, ``norm3_<t>``). Convolutions have no
bias; weights are normal with variance ``2 / (k * k * out_channels)``,
batch norms start at scale 1, bias 0 (as the reference initialises them).

Flax module names are the reference's PyTorch names (``V1.conv1``,
``V2`` with ``conv_input``, ``skip``, ``norm_skip``, ``conv1`` ...,
``decoder.linear``), so its ``state_dict`` maps on by name (the reference's
files carry a ``module.`` prefix from data-parallel training, which the
loader strips).

Readout layers, in depth order: CORnet-Z ``V1``, ``V2``, ``V4``, ``IT``,
``decoder.avgpool`` (512), ``decoder.linear`` (1000 logits). CORnet-S the
same, and before each recurrent area's final output its output at every
time step: ``V2.t0``, ``V2.t1``, ``V2``, ``V4.t0`` ... ``V4.t3``, ``V4``,
``IT.t0``, ``IT.t1``, ``IT`` (the area's output is its last step's, so
``V2`` equals ``V2.t1``).

References:
  Kubilius, Schrimpf et al., "Brain-Like Object Recognition with
  High-Performing Shallow Recurrent ANNs", NeurIPS 2019.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxscore.model import VisionModel
from models import zoo

N_CLASSES = 1000
AREAS = (("V1", 64), ("V2", 128), ("V4", 256), ("IT", 512))
# CORnet-S: recurrent area -> (channels, time steps)
S_BLOCKS = (("V2", 128, 2), ("V4", 256, 4), ("IT", 512, 2))
S_SCALE = 4  # bottleneck expansion inside a CORnet-S block

_pool = functools.partial(
  nn.max_pool, window_shape=(3, 3), strides=(2, 2), padding=((1, 1), (1, 1))
)
_bn = functools.partial(nn.BatchNorm, use_running_average=True, epsilon=1e-5)
# normal with variance 2 / (kh * kw * out_channels), untruncated
_conv_init = zoo.he_normal_fan_out


def _pad(kernel: int) -> tuple[tuple[int, int], tuple[int, int]]:
  return ((kernel // 2, kernel // 2),) * 2


class CORnetZ(nn.Module):
  """Four convolution-ReLU-pool areas and a linear decoder."""

  n_classes: int = N_CLASSES

  @nn.compact
  def __call__(self, images: jax.Array) -> dict[str, jax.Array]:
    """Args: images (n_images, height, width, 3), normalised."""
    zoo.check_images(images, "CORnet-Z")
    layers = {}
    x = images
    for area, channels in AREAS:
      kernel = 7 if area == "V1" else 3
      x = nn.Conv(
        channels,
        (kernel, kernel),
        strides=2 if area == "V1" else 1,
        padding=_pad(kernel),
        kernel_init=nn.initializers.xavier_uniform(),
        name=f"{area}.conv",
      )(x)
      x = _pool(nn.relu(x))
      layers[area] = x
    x = x.mean(axis=(1, 2))
    layers["decoder.avgpool"] = x
    layers["decoder.linear"] = nn.Dense(
      self.n_classes,
      kernel_init=nn.initializers.xavier_uniform(),
      name="decoder.linear",
    )(x)
    return layers


class StridedConv(nn.Module):
  """A bias-free k x k convolution whose stride is chosen at each call.

  CORnet-S runs one set of weights at stride 2 on the first time step and
  stride 1 after; Flax's ``nn.Conv`` fixes its stride, so this holds the
  kernel (kh, kw, in, out) itself.
  """

  features: int
  kernel_size: int

  @nn.compact
  def __call__(self, x: jax.Array, stride: int) -> jax.Array:
    kernel = self.param(
      "kernel",
      _conv_init,
      (self.kernel_size, self.kernel_size, x.shape[-1], self.features),
      jnp.float32,
    )
    return jax.lax.conv_general_dilated(
      x,
      kernel.astype(x.dtype),
      (stride, stride),
      _pad(self.kernel_size),
      dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )


class CORblockS(nn.Module):
  """A CORnet-S area: ``channels`` wide, unrolled for ``times`` steps.

  Returns the output of every time step, the last one being the area's.
  """

  channels: int
  times: int

  @nn.compact
  def __call__(self, x: jax.Array) -> list[jax.Array]:
    conv = functools.partial(nn.Conv, use_bias=False, kernel_init=_conv_init)
    wide = S_SCALE * self.channels
    x = conv(self.channels, (1, 1), name="conv_input")(x)
    conv1 = conv(wide, (1, 1), name="conv1")
    conv2 = StridedConv(wide, 3, name="conv2")
    conv3 = conv(self.channels, (1, 1), name="conv3")
    outputs = []
    for t in range(self.times):
      if t == 0:
        skip = conv(self.channels, (1, 1), strides=2, name="skip")(x)
        skip = _bn(name="norm_skip")(skip)
      else:
        skip = x
      h = nn.relu(_bn(name=f"norm1_{t}")(conv1(x)))
      h = nn.relu(_bn(name=f"norm2_{t}")(conv2(h, stride=2 if t == 0 else 1)))
      h = _bn(name=f"norm3_{t}")(conv3(h))
      x = nn.relu(h + skip)
      outputs.append(x)
    return outputs


class CORnetS(nn.Module):
  """The V1 stem, three recurrent areas and a linear decoder."""

  n_classes: int = N_CLASSES

  @nn.compact
  def __call__(self, images: jax.Array) -> dict[str, jax.Array]:
    """Args: images (n_images, height, width, 3), normalised."""
    zoo.check_images(images, "CORnet-S")
    conv = functools.partial(nn.Conv, use_bias=False, kernel_init=_conv_init)
    layers = {}
    x = conv(64, (7, 7), strides=2, padding=_pad(7), name="V1.conv1")(images)
    x = _pool(nn.relu(_bn(name="V1.norm1")(x)))
    x = conv(64, (3, 3), padding=_pad(3), name="V1.conv2")(x)
    x = nn.relu(_bn(name="V1.norm2")(x))
    layers["V1"] = x
    for area, channels, times in S_BLOCKS:
      steps = CORblockS(channels, times, name=area)(x)
      for t, step in enumerate(steps):
        layers[f"{area}.t{t}"] = step
      x = steps[-1]
      layers[area] = x
    x = x.mean(axis=(1, 2))
    layers["decoder.avgpool"] = x
    layers["decoder.linear"] = nn.Dense(self.n_classes, name="decoder.linear")(x)
    return layers


Z_LAYERS = ("V1", "V2", "V4", "IT", "decoder.avgpool", "decoder.linear")
S_LAYERS = (
  "V1",
  *(
    name
    for area, _, times in S_BLOCKS
    for name in (*(f"{area}.t{t}" for t in range(times)), area)
  ),
  "decoder.avgpool",
  "decoder.linear",
)


def cornet_z(*, key: jax.Array | None) -> VisionModel:
  """A randomly initialised CORnet-Z (224 x 224 inputs).

  Args:
    key: PRNG key the weights are drawn from; required.
  """
  return zoo.random_model("cornet_z", CORnetZ(), Z_LAYERS, key=key)


def cornet_s(*, key: jax.Array | None) -> VisionModel:
  """A randomly initialised CORnet-S (224 x 224 inputs, 53.4M parameters).

  Args:
    key: PRNG key the weights are drawn from; required.
  """
  return zoo.random_model("cornet_s", CORnetS(), S_LAYERS, key=key)
