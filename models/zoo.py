"""Pieces shared by the randomly initialised zoo (AlexNet, VGG, ResNet, CORnet, ViT).

Every zoo module names its Flax submodules after the PyTorch modules of the
reference implementation (``features.0``, ``layer1.0``/``conv1``, ``V2`` ...),
so that a parameter's path in the Flax tree, joined with dots, is its name in a
PyTorch ``state_dict`` (see ``models.torch_state_dict.variables_from_torch``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxscore.model import VisionModel

IMAGE_SIZE = 224

# PyTorch's kaiming_normal_(mode="fan_out", nonlinearity="relu"): an untruncated
# normal of variance 2 / (out_channels * kh * kw).
he_normal_fan_out = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def check_images(images: jax.Array, architecture: str, size: int | None = None):
  """Raises ValueError unless ``images`` is (n, size, size, 3)."""
  square = size is None or images.shape[1:3] == (size, size)
  if images.ndim != 4 or images.shape[-1] != 3 or not square:
    side = "height, width" if size is None else f"{size}, {size}"
    raise ValueError(
      f"{architecture} expects images of shape (n_images, {side}, 3), "
      f"got {images.shape}."
    )


def flatten_channels_first(x: jax.Array) -> jax.Array:
  """(n, h, w, c) -> (n, c * h * w) in PyTorch's NCHW flattening order.

  Keeping PyTorch's order lets a linear layer's weight be used as it comes
  from a ``state_dict`` (transposed only), with no permutation of its rows.
  """
  return jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)


def random_model(
  name: str,
  module: nn.Module,
  layers: tuple[str, ...],
  *,
  key: jax.Array | None,
  image_size: int = IMAGE_SIZE,
) -> VisionModel:
  """A ``VisionModel`` of ``module`` with weights drawn from ``key``.

  Raises:
    ValueError: ``key`` is None.
  """
  if key is None:
    raise ValueError(
      f"{name} is randomly initialised and needs a PRNG key, got key=None; "
      "pass e.g. key=jax.random.key(0)."
    )
  images = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
  variables = jax.jit(module.init)(key, images)
  return VisionModel(
    name=name,
    apply=module.apply,
    variables=variables,
    layers=layers,
    image_size=image_size,
  )


def abstract_model(builder: Callable[..., VisionModel]) -> VisionModel:
  """The model ``builder`` makes, with shapes in place of weights; nothing is drawn.

  Its ``variables`` are a tree of ``jax.ShapeDtypeStruct``: the target that
  weights loaded from a file are checked against.
  """
  built = {}

  def variables(key):
    built["model"] = builder(key=key)
    return built["model"].variables

  shapes = jax.eval_shape(variables, jax.random.key(0))
  return dataclasses.replace(built["model"], variables=shapes)
