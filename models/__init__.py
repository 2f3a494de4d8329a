"""The model zoo: builders chosen by name from one explicit table.

Every builder is called as ``builder(key=key)`` and returns a
``jaxscore.model.VisionModel``; pretrained models ignore the key, random ones
require it. Nothing is added to the table by importing a module.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import jax

from jaxscore.model import VisionModel
from models import checkpoint as orbax_checkpoint
from models import torch_state_dict, zoo
from models.alexnet import alexnet
from models.cornet import cornet_s, cornet_z
from models.efficientnet_lite import (
  efficientnet_lite0,
  efficientnet_lite1,
  efficientnet_lite2,
)
from models.resnet import resnet18, resnet50
from models.tiny import tiny_cnn
from models.vgg import vgg16
from models.vit import vit_tiny

MODELS: dict[str, Callable[..., VisionModel]] = {
  "alexnet": alexnet,
  "cornet_s": cornet_s,
  "cornet_z": cornet_z,
  "efficientnet_lite0": efficientnet_lite0,
  "efficientnet_lite1": efficientnet_lite1,
  "efficientnet_lite2": efficientnet_lite2,
  "resnet18": resnet18,
  "resnet50": resnet50,
  "tiny_cnn": tiny_cnn,
  "vgg16": vgg16,
  "vit_tiny": vit_tiny,
}


def load_model(
  name: str,
  *,
  key: jax.Array | None = None,
  checkpoint: str | os.PathLike | None = None,
  state_dict: str | os.PathLike | None = None,
) -> VisionModel:
  """Builds the model called ``name`` in ``MODELS``.

  With neither ``checkpoint`` nor ``state_dict`` the builder's own weights
  are used (drawn from ``key`` for the random zoo). With one of them the
  weights come from that file instead, after a check that every variable
  the architecture needs is there with the right shape; nothing is drawn.

  Args:
    name: a key of ``MODELS``.
    key: PRNG key for randomly initialised models; unused by pretrained ones
      and when weights come from a file.
    checkpoint: an orbax checkpoint directory of the model's variables (see
      ``models.checkpoint.save``).
    state_dict: a PyTorch ``.pt``/``.pth`` file of the reference
      implementation's ``state_dict`` (torchvision's for AlexNet, VGG,
      ResNet and ViT; the CORnet repository's for CORnet), read without torch.

  Raises:
    ValueError: ``name`` is not in ``MODELS``; both files are given; a file
      is of the wrong kind or does not fit the architecture.
    FileNotFoundError: a given file does not exist.
  """
  if name not in MODELS:
    raise ValueError(
      f"Unknown model {name!r}; valid names are {', '.join(sorted(MODELS))}."
    )
  if checkpoint is not None and state_dict is not None:
    raise ValueError(
      "Give either checkpoint= (orbax) or state_dict= (PyTorch), not both; got "
      f"checkpoint={os.fspath(checkpoint)!r}, state_dict={os.fspath(state_dict)!r}."
    )
  if checkpoint is None and state_dict is None:
    return MODELS[name](key=key)
  model = zoo.abstract_model(MODELS[name])
  if checkpoint is not None:
    return orbax_checkpoint.restore(model, checkpoint)
  if os.path.isdir(state_dict):
    raise ValueError(
      f"state_dict={os.fspath(state_dict)!r} is a directory, expected a PyTorch "
      ".pt/.pth file (an orbax checkpoint directory is loaded with checkpoint=...)."
    )
  variables = torch_state_dict.variables_from_torch(
    torch_state_dict.load_state_dict(state_dict),
    model.variables,
    architecture=name,
  )
  return dataclasses.replace(model, variables=variables)
