"""From images to per-layer features of a model.

The images are first placed on the model's "screen" as Brain-Score does: if
the model's input spans more degrees of visual angle than the stimuli were
shown at, the stimulus is pasted, at its own pixel size, onto a larger grey
canvas; if it spans fewer, the stimulus is centre-cropped. The result is then
resized to the model's input size (bilinear, antialiased), scaled to [0, 1]
and normalised with the model's mean and standard deviation. A jitted forward
pass runs in fixed-size batches (the last one padded, so one compilation
serves all), and every layer is flattened to ``(n_stimuli, n_features)``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax
import numpy as np
from PIL import Image

from jaxscore.model import VisionModel

GREY = 128


def place_on_screen(
  image: np.ndarray, *, source_degrees: float, target_degrees: float
) -> np.ndarray:
  """Shows a stimulus of ``source_degrees`` to a model seeing ``target_degrees``.

  Args:
    image: (height, width, 3) uint8 stimulus.
    source_degrees: visual angle the stimulus spanned in the experiment.
    target_degrees: visual angle the model's input spans.

  Returns:
    (size, size, 3) uint8 with ``size = round(ratio * max(height, width))``,
    ``ratio = target_degrees / source_degrees``: a grey canvas with the image
    centred on it when ``ratio >= 1``, a centre crop otherwise.
  """
  if source_degrees <= 0 or target_degrees <= 0:
    raise ValueError(
      "Visual degrees must be positive, got "
      f"source_degrees={source_degrees}, target_degrees={target_degrees}."
    )
  ratio = target_degrees / source_degrees
  height, width = image.shape[:2]
  size = round(ratio * max(height, width))
  if ratio >= 1:
    canvas = np.full((size, size, 3), GREY, dtype=np.uint8)
    top, left = (size - height) // 2, (size - width) // 2
    canvas[top : top + height, left : left + width] = image
    return canvas
  top, left = (height - size) // 2, (width - size) // 2
  return image[top : top + size, left : left + size]


def preprocess(
  images: Sequence[np.ndarray],
  model: VisionModel,
  *,
  source_degrees: float,
) -> np.ndarray:
  """Turns stimuli into the model's normalised input batch.

  Args:
    images: (n_images,) uint8 RGB arrays of any size.
    model: the model whose size, normalisation and visual degrees apply.
    source_degrees: visual angle the stimuli spanned in the experiment.

  Returns:
    (n_images, image_size, image_size, 3) float32.
  """
  size = model.image_size
  mean = np.asarray(model.mean, np.float32)
  std = np.asarray(model.std, np.float32)
  out = np.empty((len(images), size, size, 3), np.float32)
  for i, image in enumerate(images):
    screen = place_on_screen(
      image, source_degrees=source_degrees, target_degrees=model.visual_degrees
    )
    resized = Image.fromarray(screen).resize((size, size), Image.BILINEAR)
    out[i] = (np.asarray(resized, np.float32) / 255.0 - mean) / std
  return out


def extract(
  model: VisionModel,
  images: Sequence[np.ndarray],
  *,
  source_degrees: float,
  layers: Sequence[str] | None = None,
  batch_size: int = 32,
  progress: Callable[[int], None] | None = None,
) -> dict[str, np.ndarray]:
  """Runs ``model`` on stimuli and returns flattened features per layer.

  Args:
    model: the model.
    images: (n_stimuli,) uint8 RGB stimuli.
    source_degrees: visual angle the stimuli spanned in the experiment.
    layers: layers to keep, default ``model.layers``.
    batch_size: images per forward pass.
    progress: called with the number of images done after each batch.

  Returns:
    ``{layer: (n_stimuli, n_features) float32}`` in the order of ``layers``.

  Raises:
    ValueError: an unknown layer, or a layer with NaN or infinite values.
  """
  return extract_into(
    model,
    images,
    source_degrees=source_degrees,
    allocate=lambda _, shape: np.empty(shape, np.float32),
    layers=layers,
    batch_size=batch_size,
    progress=progress,
  )


def check_finite(features: np.ndarray, what: str, *, block: int = 256) -> None:
  """Raises ValueError naming ``what`` when ``features`` has NaN or inf.

  Reads ``block`` rows at a time, so a memory-mapped layer is checked without
  a whole-layer temporary.
  """
  n_bad, bad_rows = 0, []
  for start in range(0, len(features), block):
    rows = np.asarray(features[start : start + block])
    finite = np.isfinite(rows)
    if not finite.all():
      n_bad += int(finite.size - finite.sum())
      per_row = finite.reshape(len(rows), -1).all(axis=1)
      bad_rows.append(start + np.flatnonzero(~per_row))
  if n_bad:
    raise ValueError(
      _non_finite_message(what, n_bad, np.concatenate(bad_rows), len(features))
    )


def _non_finite_message(what: str, n_bad: int, rows: np.ndarray, n_rows: int) -> str:
  return (
    f"The activations of {what} hold {n_bad} NaN or infinite values "
    f"(in {len(rows)} of {n_rows} stimuli, first at index {int(rows[0])}); "
    "scoring them would give meaningless numbers."
  )


@functools.lru_cache(maxsize=8)
def _forward(apply, layers: tuple[str, ...]):
  """One jitted function per (apply, layers), so that repeated extractions
  with one model reuse its compilation; jax caches by input shape within."""

  def run(variables, images):
    outputs = apply(variables, images)
    return {name: outputs[name] for name in layers}

  return jax.jit(run)


def extract_into(
  model: VisionModel,
  images: Sequence[np.ndarray],
  *,
  source_degrees: float,
  allocate: Callable[[str, tuple[int, int]], np.ndarray],
  layers: Sequence[str] | None = None,
  batch_size: int = 32,
  progress: Callable[[int], None] | None = None,
) -> dict[str, np.ndarray]:
  """Like ``extract``, but writes each batch's rows straight into ``allocate``d
  arrays, so that no layer is ever held whole in memory by this function.

  With ``allocate`` returning memory maps on disk (``np.lib.format.open_memmap``,
  as ``jaxscore.cache`` does), peak memory is one batch of every layer plus
  what the finiteness check of one layer reads, whatever the network's depth.

  Args:
    model: the model.
    images: (n_stimuli,) uint8 RGB stimuli.
    source_degrees: visual angle the stimuli spanned in the experiment.
    allocate: ``allocate(layer, (n_stimuli, n_features))`` returns a writable
      float32 array of that shape; called once per layer, after the first batch.
    layers: layers to keep, default ``model.layers``.
    batch_size: images per forward pass.
    progress: called with the number of images done after each batch.

  Returns:
    ``{layer: the allocated array, filled}`` in the order of ``layers``.

  Raises:
    ValueError: an unknown layer, a wrongly shaped allocation, or a layer with
      NaN or infinite values.
  """
  layers = tuple(model.layers if layers is None else layers)
  unknown = [name for name in layers if name not in model.layers]
  if unknown:
    raise ValueError(
      f"Model {model.name!r} has no layers {unknown}; its layers are "
      f"{', '.join(model.layers)}."
    )
  if batch_size < 1:
    raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
  forward = _forward(model.apply, layers)
  n_stimuli = len(images)
  features: dict[str, np.ndarray] = {}
  bad_rows: dict[str, list[np.ndarray]] = {name: [] for name in layers}
  n_bad = dict.fromkeys(layers, 0)
  for start in range(0, n_stimuli, batch_size):
    batch = preprocess(
      images[start : start + batch_size], model, source_degrees=source_degrees
    )
    n_real = len(batch)
    if n_real < batch_size:  # pad so that every batch has one shape
      pad = np.repeat(batch[-1:], batch_size - n_real, axis=0)
      batch = np.concatenate([batch, pad])
    outputs = forward(model.variables, batch)
    for name in layers:
      rows = np.asarray(outputs[name])[:n_real].reshape(n_real, -1)
      if name not in features:
        shape = (n_stimuli, rows.shape[1])
        features[name] = allocate(name, shape)
        if features[name].shape != shape:
          raise ValueError(
            f"allocate returned shape {features[name].shape} for layer "
            f"{name!r}; expected {shape}."
          )
      finite = np.isfinite(rows)  # checked here, while the rows are in memory
      if not finite.all():
        n_bad[name] += int(finite.size - finite.sum())
        bad_rows[name].append(start + np.flatnonzero(~finite.all(axis=1)))
      features[name][start : start + n_real] = rows
    del outputs
    if progress is not None:
      progress(start + n_real)
  for name in layers:
    if n_bad[name]:
      rows = np.concatenate(bad_rows[name])
      raise ValueError(
        _non_finite_message(
          f"layer {name!r} of model {model.name!r}", n_bad[name], rows, n_stimuli
        )
      )
  return features
