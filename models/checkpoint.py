"""Model variables to and from orbax checkpoint directories.

``save`` writes a model's variables (the whole tree: ``params`` and, for
models with batch norm, ``batch_stats``) with orbax's ``StandardCheckpointer``,
which writes into a temporary folder and renames it when complete, so a
checkpoint directory is either whole or absent. ``restore`` reads one back
into the structure of a model's variables after checking, from the
checkpoint's metadata and before any array is read, that every variable is
there with the shape and dtype the architecture needs.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxscore.model import VisionModel

# A file orbax writes into every StandardCheckpointer directory.
_METADATA_FILE = "_METADATA"


def _flat(tree) -> dict[str, object]:
  """{'params/layer1.0/conv1/kernel': leaf} in the tree's own order."""
  return {
    "/".join(str(getattr(key, "key", key)) for key in path): leaf
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
  }


def save(path: str | os.PathLike, variables) -> None:
  """Writes ``variables`` as an orbax checkpoint directory at ``path``.

  Args:
    path: directory to create; must not exist yet.
    variables: a pytree of arrays, e.g. ``model.variables``.

  Raises:
    FileExistsError: something is already at ``path``.
  """
  path = pathlib.Path(path).absolute()
  if path.exists():
    raise FileExistsError(
      f"Checkpoint path {os.fspath(path)!r} already exists; choose a new one."
    )
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(path, jax.tree.map(jax.numpy.asarray, variables))
    checkpointer.wait_until_finished()


def _check_directory(path: pathlib.Path) -> None:
  if not path.exists():
    raise FileNotFoundError(f"No checkpoint at {os.fspath(path)!r}.")
  if not path.is_dir():
    raise ValueError(
      f"Checkpoint {os.fspath(path)!r} is a file, expected an orbax checkpoint "
      "directory (a PyTorch .pt/.pth file is loaded with state_dict=...)."
    )
  if not (path / _METADATA_FILE).is_file():
    raise ValueError(
      f"Directory {os.fspath(path)!r} is not an orbax checkpoint: it has no "
      f"{_METADATA_FILE!r} file."
    )


def check_fits(found, expected, *, source: str, architecture: str) -> None:
  """Raises ValueError unless ``found`` has ``expected``'s paths, shapes, dtypes.

  Args:
    found: a tree whose leaves have ``shape`` and ``dtype`` (arrays or
      metadata).
    expected: the same, for the architecture.
    source: what ``found`` came from, for the message.
    architecture: the model's name, for the message.

  Raises:
    ValueError: naming the first variable path, in ``expected``'s order, that
      is missing or has another shape or dtype; or the first extra one.
  """
  found, expected = _flat(found), _flat(expected)
  for path, want in expected.items():
    if path not in found:
      raise ValueError(
        f"{source} has no variable {path}, which {architecture} needs "
        f"(shape {tuple(want.shape)})."
      )
    got = found[path]
    if tuple(got.shape) != tuple(want.shape):
      raise ValueError(
        f"{source} does not fit {architecture}: {path} has shape "
        f"{tuple(got.shape)}, expected {tuple(want.shape)}."
      )
    if np.dtype(got.dtype) != np.dtype(want.dtype):
      raise ValueError(
        f"{source} does not fit {architecture}: {path} has dtype "
        f"{np.dtype(got.dtype)}, expected {np.dtype(want.dtype)}."
      )
  extra = [path for path in found if path not in expected]
  if extra:
    raise ValueError(
      f"{source} has {len(extra)} variables {architecture} does not have, "
      f"e.g. {extra[:3]}; is it a checkpoint of another architecture?"
    )


def restore_variables(
  path: str | os.PathLike, target, *, architecture: str = "the model"
):
  """Reads the checkpoint at ``path`` into the structure of ``target``.

  Args:
    path: an orbax checkpoint directory, as written by ``save``.
    target: the variables, or their ``jax.ShapeDtypeStruct``s, that the
      checkpoint must match.
    architecture: the model's name, for error messages.

  Returns:
    A tree like ``target`` of arrays on the default device.

  Raises:
    FileNotFoundError: nothing at ``path``.
    ValueError: ``path`` is not an orbax checkpoint directory, or its tree does
      not match ``target`` (see ``check_fits``).
  """
  path = pathlib.Path(path).absolute()
  _check_directory(path)
  source = f"Checkpoint {os.fspath(path)!r}"
  with ocp.StandardCheckpointer() as checkpointer:
    metadata = checkpointer.metadata(path).item_metadata.tree
    check_fits(metadata, target, source=source, architecture=architecture)
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    abstract = jax.tree.map(
      lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=device),
      target,
    )
    return checkpointer.restore(path, abstract)


def restore(model: VisionModel, path: str | os.PathLike) -> VisionModel:
  """``model`` with its variables replaced by the checkpoint at ``path``.

  ``model.variables`` may be arrays or ``jax.ShapeDtypeStruct``s (as from
  ``models.zoo.abstract_model``); only their structure, shapes and dtypes are
  used.
  """
  variables = restore_variables(path, model.variables, architecture=model.name)
  return dataclasses.replace(model, variables=variables)
