"""What jaxscore needs to know about a vision model.

A model is a pure function from parameters and a batch of images to a dict of
named layer activations, plus the facts needed to show it images the way it
was trained: input size, pixel normalisation and how many degrees of visual
angle its input spans. Model definitions live in the top-level ``models``
package; this module holds only the interface, so that the library never
depends on a particular zoo.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# (variables, images (n_images, height, width, 3) float, normalised)
#   -> {layer name: (n_images, ...)}
ApplyFn = Callable[[Any, jax.Array], Mapping[str, jax.Array]]


@dataclasses.dataclass(frozen=True)
class VisionModel:
  """A model ready to produce activations.

  Attributes:
    name: identifier, as in the model table.
    apply: ``apply(variables, images) -> {layer: activations}``; ``images`` is
      ``(n_images, image_size, image_size, 3)``, already normalised with
      ``mean`` and ``std``. Every name in ``layers`` must be a key of the
      result.
    variables: the parameter pytree passed to ``apply``.
    layers: readout layers in depth order.
    image_size: side of the square input in pixels.
    mean: per-channel mean subtracted from pixels scaled to [0, 1].
    std: per-channel standard deviation the centred pixels are divided by.
    visual_degrees: visual angle spanned by the input, as in Brain-Score
      (default 8).
  """

  name: str
  apply: ApplyFn
  variables: Any
  layers: tuple[str, ...]
  image_size: int
  mean: tuple[float, float, float] = IMAGENET_MEAN
  std: tuple[float, float, float] = IMAGENET_STD
  visual_degrees: float = 8.0
