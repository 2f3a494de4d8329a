"""Stimulus sets: the images shown to the brain, by ``stimulus_id``."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, UnidentifiedImageError


@dataclasses.dataclass(frozen=True, eq=False)
class StimulusSet:
  """Images with their ids.

  Attributes:
    identifier: name of the set, e.g. ``"cowley2023.210325"``.
    stimulus_ids: (n_stimuli,) ids, in the order of ``images``.
    images: (n_stimuli,) RGB images, each ``(height, width, 3)`` uint8.
    labels: optional per-stimulus labels, e.g. ``{"object_name": (n_stimuli,)}``.
  """

  identifier: str
  stimulus_ids: tuple[str, ...]
  images: tuple[np.ndarray, ...]
  labels: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    if len(self.stimulus_ids) != len(self.images):
      raise ValueError(
        f"StimulusSet {self.identifier!r} has {len(self.stimulus_ids)} ids "
        f"but {len(self.images)} images."
      )
    if len(set(self.stimulus_ids)) != len(self.stimulus_ids):
      raise ValueError(f"StimulusSet {self.identifier!r} has duplicate ids.")
    for name, values in self.labels.items():
      if len(values) != len(self.stimulus_ids):
        raise ValueError(
          f"Label {name!r} of StimulusSet {self.identifier!r} has "
          f"{len(values)} values for {len(self.stimulus_ids)} stimuli."
        )

  def __len__(self) -> int:
    return len(self.stimulus_ids)

  def content_hash(self) -> str:
    """sha256 over ids and pixels: equal hashes mean identical stimuli."""
    digest = hashlib.sha256()
    for stimulus_id, image in zip(self.stimulus_ids, self.images, strict=True):
      digest.update(stimulus_id.encode())
      digest.update(str(image.shape).encode())
      digest.update(np.ascontiguousarray(image).tobytes())
    return digest.hexdigest()

  def subset(self, stimulus_ids: Sequence[str]) -> StimulusSet:
    """The stimuli with the given ids, in that order."""
    position = {s: i for i, s in enumerate(self.stimulus_ids)}
    missing = [s for s in stimulus_ids if s not in position]
    if missing:
      raise ValueError(
        f"{len(missing)} stimulus ids are not in {self.identifier!r}, "
        f"e.g. {missing[:3]}."
      )
    index = [position[s] for s in stimulus_ids]
    return StimulusSet(
      self.identifier,
      tuple(stimulus_ids),
      tuple(self.images[i] for i in index),
      {k: np.asarray(v)[index] for k, v in self.labels.items()},
    )


def read_zip_images(path: Path, names: Sequence[str]) -> tuple[np.ndarray, ...]:
  """Reads images from a zip by file name, wherever they sit inside it.

  Args:
    path: the zip file.
    names: base names of the members to read, e.g. ``["image0001.jpg"]``.

  Returns:
    One ``(height, width, 3)`` uint8 RGB array per name, in order.

  Raises:
    ValueError: a name is missing from the zip, names several members (in
      different folders), or its member cannot be decoded as an image.
  """
  with zipfile.ZipFile(path) as archive:
    members: dict[str, list[str]] = {}
    for info in archive.infolist():
      if not info.is_dir():
        members.setdefault(PurePosixPath(info.filename).name, []).append(info.filename)
    missing = [n for n in names if n not in members]
    if missing:
      raise ValueError(
        f"{len(missing)} images are missing from {path}, e.g. {missing[:3]}."
      )
    clashes = [n for n in dict.fromkeys(names) if len(members[n]) > 1]
    if clashes:
      raise ValueError(
        f"{len(clashes)} image names match several files in {path}, e.g. "
        f"{clashes[0]!r}: {', '.join(members[clashes[0]])}; images are found by "
        "base name, so each must be unique in the zip."
      )
    return tuple(_decode(archive, members[n][0], path) for n in names)


def _decode(archive: zipfile.ZipFile, member: str, path: Path) -> np.ndarray:
  try:
    with Image.open(io.BytesIO(archive.read(member))) as image:
      return np.asarray(image.convert("RGB"))
  except (UnidentifiedImageError, OSError) as e:
    raise ValueError(f"Image {member!r} in {path} cannot be decoded: {e}") from e
