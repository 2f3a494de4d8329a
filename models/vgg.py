"""VGG-16 in Flax, randomly initialised, laid out as torchvision's ``vgg16``.

Thirteen 3x3 convolutions (padding 1, with bias, each followed by ReLU) in
five blocks of 64, 128, 256, 512 and 512 channels (2, 2, 3, 3, 3 convolutions),
each block closed by a 2x2 stride-2 max pool; then three linear layers
(25088 -> 4096 -> 4096 -> 1000) with ReLU between them. Dropout is left out
(inference only). On 224 x 224 inputs the last pool is 7 x 7, so torchvision's
adaptive average pool to 7 x 7 is the identity and is not applied; other
input sizes are refused. No batch norm (torchvision's ``vgg16``, not
``vgg16_bn``).

Flax module names are torchvision's (``features.0``, ``features.2`` ...,
``classifier.0``, ``classifier.3``, ``classifier.6``) and the last pool is
flattened channel-first, so a torchvision ``state_dict`` maps on by name.

Readout layers, in depth order: the pool closing each block, ``features.4``
(112x112x64), ``features.9`` (56x56x128), ``features.16`` (28x28x256),
``features.23`` (14x14x512), ``features.30`` (7x7x512); then ``classifier.1``
and ``classifier.4`` (4096 each, after ReLU) and ``classifier.6`` (1000
logits).

Weights as torchvision draws them: convolutions He normal over fan-out,
linear layers normal with standard deviation 0.01, biases zero.

References:
  Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale
  Image Recognition", ICLR 2015 (configuration D).
"""

from __future__ import annotations

import flax.linen as nn
import jax

from jaxscore.model import VisionModel
from models import zoo

N_CLASSES = 1000
BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
LAYERS = (
  "features.4",
  "features.9",
  "features.16",
  "features.23",
  "features.30",
  "classifier.1",
  "classifier.4",
  "classifier.6",
)


class VGG16(nn.Module):
  """torchvision's VGG-16 without dropout, returning every readout layer."""

  n_classes: int = N_CLASSES

  @nn.compact
  def __call__(self, images: jax.Array) -> dict[str, jax.Array]:
    """Args: images (n_images, 224, 224, 3), normalised."""
    zoo.check_images(images, "VGG-16", zoo.IMAGE_SIZE)
    layers = {}
    x = images
    index = 0  # torchvision's index in ``features``: conv, ReLU, ..., pool
    for block in BLOCKS:
      for channels in block:
        x = nn.Conv(
          channels,
          (3, 3),
          padding=((1, 1), (1, 1)),
          kernel_init=zoo.he_normal_fan_out,
          name=f"features.{index}",
        )(x)
        x = nn.relu(x)
        index += 2
      x = nn.max_pool(x, (2, 2), strides=(2, 2))
      layers[f"features.{index}"] = x
      index += 1
    dense_init = nn.initializers.normal(0.01)
    x = zoo.flatten_channels_first(x)
    x = nn.relu(nn.Dense(4096, kernel_init=dense_init, name="classifier.0")(x))
    layers["classifier.1"] = x
    x = nn.relu(nn.Dense(4096, kernel_init=dense_init, name="classifier.3")(x))
    layers["classifier.4"] = x
    layers["classifier.6"] = nn.Dense(
      self.n_classes, kernel_init=dense_init, name="classifier.6"
    )(x)
    return layers


def vgg16(*, key: jax.Array | None) -> VisionModel:
  """A randomly initialised VGG-16 (224 x 224 inputs, 138M parameters).

  Args:
    key: PRNG key the weights are drawn from; required.
  """
  return zoo.random_model("vgg16", VGG16(), LAYERS, key=key)
