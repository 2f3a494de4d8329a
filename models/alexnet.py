"""AlexNet in Flax, randomly initialised, laid out as torchvision's ``alexnet``.

Five convolutions with ReLU (64, 192, 384, 256 and 256 channels; kernels 11,
5, 3, 3, 3; the first with stride 4 and padding 2, the others stride 1 with
padding 2, 1, 1, 1) and 3x3 stride-2 max pools after the first, second and
fifth; then three linear layers (9216 -> 4096 -> 4096 -> 1000) with ReLU
between them. Dropout is left out: the model only runs in inference mode. On
224 x 224 inputs the last pool is already 6 x 6, so torchvision's adaptive
average pool to 6 x 6 is the identity and is not applied; other input sizes
are refused.

Flax module names are torchvision's (``features.0`` ... ``classifier.6``), and
the last pool is flattened in PyTorch's channel-first order, so a torchvision
``state_dict`` maps onto the parameters by name, with only the layout of each
weight changed.

Readout layers, in depth order, named after the torchvision module whose
output they are: ``features.2`` (27x27x64, first pool), ``features.5``
(13x13x192), ``features.7`` (13x13x384), ``features.9`` (13x13x256),
``features.11`` (13x13x256, last ReLU), ``features.12`` (6x6x256, last pool),
``classifier.2`` (4096), ``classifier.5`` (4096), ``classifier.6`` (1000
logits).

Weights: Flax's defaults (LeCun normal kernels, zero biases).

References:
  Krizhevsky, "One weird trick for parallelizing convolutional neural
  networks", arXiv:1404.5997 (2014): the one-GPU variant torchvision follows.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from jaxscore.model import VisionModel
from models import zoo

N_CLASSES = 1000
# (torchvision index, channels, kernel, stride, padding, max pool follows)
_CONVS = (
  (0, 64, 11, 4, 2, True),
  (3, 192, 5, 1, 2, True),
  (6, 384, 3, 1, 1, False),
  (8, 256, 3, 1, 1, False),
  (10, 256, 3, 1, 1, True),
)
LAYERS = (
  "features.2",
  "features.5",
  "features.7",
  "features.9",
  "features.11",
  "features.12",
  "classifier.2",
  "classifier.5",
  "classifier.6",
)


class AlexNet(nn.Module):
  """torchvision's AlexNet without dropout, returning every readout layer."""

  n_classes: int = N_CLASSES

  @nn.compact
  def __call__(self, images: jax.Array) -> dict[str, jax.Array]:
    """Args: images (n_images, 224, 224, 3), normalised."""
    zoo.check_images(images, "AlexNet", zoo.IMAGE_SIZE)
    layers = {}
    x = images
    for index, channels, kernel, stride, padding, pool in _CONVS:
      x = nn.Conv(
        channels,
        (kernel, kernel),
        strides=stride,
        padding=((padding, padding), (padding, padding)),
        name=f"features.{index}",
      )(x)
      x = nn.relu(x)
      layers[f"features.{index + 1}"] = x
      if pool:
        x = nn.max_pool(x, (3, 3), strides=(2, 2))
        layers[f"features.{index + 2}"] = x
    x = zoo.flatten_channels_first(x)
    x = nn.relu(nn.Dense(4096, name="classifier.1")(x))
    layers["classifier.2"] = x
    x = nn.relu(nn.Dense(4096, name="classifier.4")(x))
    layers["classifier.5"] = x
    layers["classifier.6"] = nn.Dense(self.n_classes, name="classifier.6")(x)
    return {name: layers[name] for name in LAYERS}


def alexnet(*, key: jax.Array | None) -> VisionModel:
  """A randomly initialised AlexNet (224 x 224 inputs).

  Args:
    key: PRNG key the weights are drawn from; required.
  """
  return zoo.random_model("alexnet", AlexNet(), LAYERS, key=key)
