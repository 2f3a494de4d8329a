"""The model zoo: builders chosen by name from one explicit table.

Every builder is called as ``builder(key=key)`` and returns a
``jaxscore.model.VisionModel``; pretrained models ignore the key, random ones
require it. Nothing is added to the table by importing a module.
"""

from __future__ import annotations

from collections.abc import Callable

import jax

from jaxscore.model import VisionModel
from models.efficientnet_lite import (
  efficientnet_lite0,
  efficientnet_lite1,
  efficientnet_lite2,
)
from models.tiny import tiny_cnn

MODELS: dict[str, Callable[..., VisionModel]] = {
  "efficientnet_lite0": efficientnet_lite0,
  "efficientnet_lite1": efficientnet_lite1,
  "efficientnet_lite2": efficientnet_lite2,
  "tiny_cnn": tiny_cnn,
}


def load_model(name: str, *, key: jax.Array | None = None) -> VisionModel:
  """Builds the model called ``name`` in ``MODELS``.

  Args:
    name: a key of ``MODELS``.
    key: PRNG key for randomly initialised models; unused by pretrained ones.

  Raises:
    ValueError: ``name`` is not in ``MODELS``.
  """
  if name not in MODELS:
    raise ValueError(
      f"Unknown model {name!r}; valid names are {', '.join(sorted(MODELS))}."
    )
  return MODELS[name](key=key)
