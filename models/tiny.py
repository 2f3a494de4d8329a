"""A small random CNN, for tests and smoke runs that need a model in seconds.

Three 3x3 convolutions with ReLU (16, 32 and 64 channels; the last two with
stride 2) on 32x32 inputs, then a global average pool. Its weights are Flax's
default initialisation drawn from the given key, so the same key always gives
the same model.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxscore.model import VisionModel

IMAGE_SIZE = 32
LAYERS = ("conv1", "conv2", "conv3", "pool")


class TinyCNN(nn.Module):
  """conv1 (32x32x16), conv2 (16x16x32), conv3 (8x8x64), pool (64)."""

  @nn.compact
  def __call__(self, images: jax.Array) -> dict[str, jax.Array]:
    """Args: images (n_images, height, width, 3), normalised."""
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(
        "TinyCNN expects images of shape (n_images, height, width, 3), "
        f"got {images.shape}."
      )
    conv1 = nn.relu(nn.Conv(16, (3, 3), name="conv1")(images))
    conv2 = nn.relu(nn.Conv(32, (3, 3), strides=2, name="conv2")(conv1))
    conv3 = nn.relu(nn.Conv(64, (3, 3), strides=2, name="conv3")(conv2))
    pool = jnp.mean(conv3, axis=(1, 2))
    return {"conv1": conv1, "conv2": conv2, "conv3": conv3, "pool": pool}


def tiny_cnn(*, key: jax.Array | None) -> VisionModel:
  """A randomly initialised ``TinyCNN``.

  Args:
    key: PRNG key the weights are drawn from; required.

  Raises:
    ValueError: ``key`` is None.
  """
  if key is None:
    raise ValueError(
      "tiny_cnn is randomly initialised and needs a PRNG key, got key=None; "
      "pass e.g. key=jax.random.key(0)."
    )
  module = TinyCNN()
  images = jnp.zeros((1, IMAGE_SIZE, IMAGE_SIZE, 3), jnp.float32)
  return VisionModel(
    name="tiny_cnn",
    apply=module.apply,
    variables=module.init(key, images),
    layers=LAYERS,
    image_size=IMAGE_SIZE,
  )
