"""A content-addressed activation cache on disk.

An entry is a model's activations on one stimulus set, one ``.npy`` file per
layer (``(n_stimuli, n_features)`` float32, rows in the order of the stimulus
ids), under ``<root>/<key>/``. The key is a sha256 over everything that
changes the numbers (``cache_key``): the parameters hash, the preprocessing
(image size, mean, std, the model's and the stimuli's visual degrees), the
stimulus ids and pixels, the layer list and ``CODE_VERSION``. A model name is
never part of it, so new weights under an old name are a miss.

An entry is written into a temporary folder beside its final place, layer
files streamed in batch by batch (``activations.extract_into``), a manifest
written last, and the folder renamed into place: a reader sees a whole entry
or none. Layers are read back one at a time as read-only memory maps.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from jaxscore import activations
from jaxscore.model import VisionModel

# Bump whenever preprocessing or extraction changes the activations.
CODE_VERSION = 1
_MANIFEST = "manifest.json"


def default_root() -> Path:
  """``$JAXSCORE_CACHE/activations``, else ``~/.cache/jaxscore/activations``."""
  base = os.environ.get("JAXSCORE_CACHE") or Path.home() / ".cache" / "jaxscore"
  return Path(base) / "activations"


def cache_key(
  *,
  params_hash: str,
  image_size: int,
  mean: Sequence[float],
  std: Sequence[float],
  model_degrees: float,
  source_degrees: float,
  stimulus_ids: Sequence[str],
  images_hash: str,
  layers: Sequence[str],
  code_version: int = CODE_VERSION,
) -> str:
  """sha256 hex digest of everything the activations depend on.

  Args:
    params_hash: ``jaxscore.store.params_hash`` of the model's variables.
    image_size: side of the model's input in pixels.
    mean, std: the model's per-channel pixel normalisation.
    model_degrees: visual angle the model's input spans.
    source_degrees: visual angle the stimuli spanned in the experiment.
    stimulus_ids: (n_stimuli,) ids, in the order of the cached rows.
    images_hash: hash of the images' pixels (``StimulusSet.content_hash``).
    layers: the layers of the entry, in order.
    code_version: ``CODE_VERSION`` unless testing.
  """
  fields = {
    "params_hash": str(params_hash),
    "image_size": int(image_size),
    "mean": [float(m) for m in mean],
    "std": [float(s) for s in std],
    "model_degrees": float(model_degrees),
    "source_degrees": float(source_degrees),
    "stimulus_ids": [str(s) for s in stimulus_ids],
    "images_hash": str(images_hash),
    "layers": [str(name) for name in layers],
    "code_version": int(code_version),
  }
  text = json.dumps(fields, sort_keys=True, separators=(",", ":"))
  return hashlib.sha256(text.encode()).hexdigest()


def model_key(
  model: VisionModel,
  *,
  params_hash: str,
  source_degrees: float,
  stimulus_ids: Sequence[str],
  images_hash: str,
  layers: Sequence[str],
) -> str:
  """``cache_key`` with the model's own preprocessing filled in."""
  return cache_key(
    params_hash=params_hash,
    image_size=model.image_size,
    mean=model.mean,
    std=model.std,
    model_degrees=model.visual_degrees,
    source_degrees=source_degrees,
    stimulus_ids=stimulus_ids,
    images_hash=images_hash,
    layers=layers,
  )


class ActivationCache:
  """Entries under ``root`` (default ``default_root()``)."""

  def __init__(self, root: str | Path | None = None):
    self.root = Path(root) if root is not None else default_root()

  def path(self, key: str) -> Path:
    return self.root / key

  def contains(self, key: str) -> bool:
    return (self.path(key) / _MANIFEST).is_file()

  def layers(self, key: str) -> tuple[str, ...]:
    """The layers of entry ``key``, in order."""
    return tuple(self._manifest(key)["files"])

  def load(self, key: str, layer: str) -> np.ndarray:
    """One layer of entry ``key`` as a read-only memory map."""
    files = self._manifest(key)["files"]
    if layer not in files:
      raise ValueError(
        f"Cache entry {key[:12]} has no layer {layer!r}; it has {', '.join(files)}."
      )
    return np.load(self.path(key) / files[layer], mmap_mode="r")

  def _manifest(self, key: str) -> dict:
    path = self.path(key) / _MANIFEST
    if not path.is_file():
      raise KeyError(f"No activation cache entry {key} under {self.root}.")
    return json.loads(path.read_text())

  def write(
    self,
    key: str,
    fill: Callable[[Callable[[str, tuple[int, int]], np.ndarray]], object],
    *,
    layers: Sequence[str],
  ) -> None:
    """Creates entry ``key`` atomically.

    Args:
      key: the entry's key.
      fill: ``fill(allocate)`` writes every layer into what
        ``allocate(layer, shape)`` returns: a ``_RowFile``, which takes
        ``rows[start:stop] = block`` assignments of float32 rows, e.g. from
        ``activations.extract_into``.
      layers: the layers ``fill`` will allocate, in order.

    If another writer finished the same key meanwhile, its entry is kept (both
    hold the same activations) and this one is discarded.
    """
    self.root.mkdir(parents=True, exist_ok=True)
    files = {name: f"{i:04d}.npy" for i, name in enumerate(layers)}
    tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=f".{key[:16]}."))
    try:
      arrays = {}

      def allocate(layer: str, shape: tuple[int, int]) -> np.ndarray:
        if layer not in files:
          raise ValueError(
            f"fill allocated layer {layer!r}, which is not in layers {list(layers)}."
          )
        arrays[layer] = _RowFile(tmp / files[layer], shape)
        return arrays[layer]

      try:
        fill(allocate)
      finally:
        for array in arrays.values():
          array.close()
      missing = [name for name in layers if name not in arrays]
      if missing:
        raise ValueError(f"fill never allocated layers {missing}.")
      (tmp / _MANIFEST).write_text(json.dumps({"files": files}) + "\n")
      try:
        os.rename(tmp, self.path(key))
      except OSError:
        if not self.contains(key):
          raise
    finally:
      shutil.rmtree(tmp, ignore_errors=True)


class _RowFile:
  """An (n_rows, n_features) float32 ``.npy`` file filled by row blocks.

  ``rows[start:stop] = block`` writes the block at its place with plain file
  writes. The bytes go through the page cache, which the kernel writes back
  and reclaims; through a writable memory map they would stay dirty in this
  process's own resident memory until the map is flushed, every layer of a
  deep network at once.
  """

  def __init__(self, path: Path, shape: tuple[int, int]):
    self.shape = tuple(int(n) for n in shape)
    self._file = open(path, "wb")  # noqa: SIM115 (closed by close())
    header = {
      "descr": np.lib.format.dtype_to_descr(np.dtype("<f4")),
      "fortran_order": False,
      "shape": self.shape,
    }
    np.lib.format.write_array_header_2_0(self._file, header)
    self._offset = self._file.tell()
    self._row_bytes = 4 * self.shape[1]
    self._file.truncate(self._offset + self.shape[0] * self._row_bytes)

  def __setitem__(self, index: slice, block: np.ndarray) -> None:
    if not isinstance(index, slice) or index.step not in (None, 1):
      raise TypeError(f"rows are written by slice, got {index!r}.")
    start, stop, _ = index.indices(self.shape[0])
    block = np.ascontiguousarray(block, dtype="<f4")
    if block.shape != (stop - start, self.shape[1]):
      raise ValueError(
        f"a block for rows {start}:{stop} must have shape "
        f"{(stop - start, self.shape[1])}, got {block.shape}."
      )
    self._file.seek(self._offset + start * self._row_bytes)
    self._file.write(block.data)

  def close(self) -> None:
    self._file.close()


def cached_activations(
  cache: ActivationCache,
  model: VisionModel,
  images: Sequence[np.ndarray],
  *,
  key: str,
  source_degrees: float,
  layers: Sequence[str],
  batch_size: int = 32,
  progress: Callable[[int], None] | None = None,
) -> bool:
  """Makes sure entry ``key`` exists, streaming the model's activations into
  it when it does not; returns whether it was already there."""
  if cache.contains(key):
    return True

  def fill(allocate):
    activations.extract_into(
      model,
      images,
      source_degrees=source_degrees,
      allocate=allocate,
      layers=layers,
      batch_size=batch_size,
      progress=progress,
    )

  cache.write(key, fill, layers=layers)
  return False
