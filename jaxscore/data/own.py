"""Your own recordings as a benchmark: a response array plus images.

Inputs:

- responses: a ``.npy`` array, ``(n_neurons, n_images, n_repeats)`` single
  trials with NaN in the repeat slots an image was not shown in, or
  ``(n_neurons, n_images)`` responses already averaged over repeats.
- images: a folder or a ``.zip`` of image files (PNG, JPEG, BMP, GIF, TIFF,
  WebP), found by base name in any sub-folder (hidden files and folders
  inside it and ``__MACOSX`` entries are skipped; any other file is an error).
  An image's ``stimulus_id`` is its file name without the extension, so no
  two files may share that name, wherever they sit.
- labels (optional): a UTF-8 CSV with a ``filename`` or a ``stimulus_id``
  column and one label column (``object_name`` or ``label`` when there are
  several), e.g. the object shown, with a cell in every row; splits are then
  stratified by it.

Image order, i.e. which image column ``j`` of the responses belongs to: the
rows of the labels CSV when it is given (it must list every image once), else
the image file names sorted as strings (so name them ``img001.png``,
``img002.png``, ... or give a CSV).

Ceiling: split-half over repetitions when some image has at least two
repeats; otherwise no ceiling and raw scores only. Metrics: ``"pls"`` and
``"ridge"`` build a ``NeuralBenchmark``; ``"rsa"`` and ``"cka"`` build an
``RSABenchmark`` on the RDM (1 - Pearson r) of the repeat-averaged responses,
which is one RDM and so has no ceiling.

Missing trials must be missing for every neuron alike (a NaN pattern that
differs between neurons is refused): assemblies hold whole trials only.
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path, PurePosixPath

import jax.numpy as jnp
import numpy as np
import xarray as xr
from PIL import Image, UnidentifiedImageError

from jaxscore import kernels, scoring
from jaxscore.benchmark import NeuralBenchmark
from jaxscore.data import assembly as assembly_lib
from jaxscore.data import tables
from jaxscore.data.stimuli import StimulusSet
from jaxscore.rsa_benchmark import RSABenchmark

METRICS = ("pls", "ridge", "rsa", "cka")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
LABEL_COLUMNS = ("object_name", "label")
VERSION = 1


def load_benchmark(
  responses: str | Path,
  images: str | Path,
  labels: str | Path | None = None,
  *,
  metric: str = "pls",
  visual_degrees: float = 8.0,
  identifier: str | None = None,
) -> NeuralBenchmark | RSABenchmark:
  """A benchmark from a response array, images and optional labels.

  Args:
    responses: the ``.npy`` file (see the module notes for its layout).
    images: a folder or ``.zip`` of images.
    labels: optional CSV giving the image order and a label per image.
    metric: one of ``METRICS``.
    visual_degrees: visual angle the images spanned in the experiment.
    identifier: benchmark name; default ``own.<responses stem>-<metric>``.

  Raises:
    ValueError: naming the file and what is wrong with it.
  """
  if metric not in METRICS:
    raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}.")
  if not visual_degrees > 0:
    raise ValueError(f"visual_degrees must be positive, got {visual_degrees}.")
  trials = read_responses(responses)
  files = list_images(images)
  order, label_values = _image_order(files, labels, images)
  if len(order) != trials.shape[1]:
    raise ValueError(
      f"{responses} holds responses to {trials.shape[1]} images (axis 1) but "
      f"{'the labels CSV lists' if labels else 'there are'} {len(order)} images "
      f"in {'it' if labels else images}; they must match one to one."
    )
  ids = tuple(_stem(name) for name in order)
  stimuli = StimulusSet(
    identifier=f"own.{Path(images).stem}",
    stimulus_ids=ids,
    images=tuple(_decode(files[name], name) for name in order),
    labels={} if label_values is None else {"object_name": label_values},
  )
  if identifier is None:
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", Path(responses).stem)
    identifier = f"own.{stem}-{metric}"
  assembly = to_assembly(trials, ids, label_values)
  if metric in ("rsa", "cka"):
    return rdm_benchmark(
      assembly,
      stimuli,
      identifier=identifier,
      visual_degrees=visual_degrees,
      metric=metric,
    )
  benchmark = NeuralBenchmark(
    identifier=identifier,
    version=VERSION,
    assembly=assembly,
    stimuli=stimuli,
    visual_degrees=visual_degrees,
    regression=scoring.Regression(kind=metric),
    has_ceiling=len(np.unique(assembly["repetition"].values)) >= 2,
    stratify_by=None if label_values is None else "object_name",
  )
  benchmark.splits()  # too few images, or classes too small, fail here
  return benchmark


def read_responses(path: str | Path) -> np.ndarray:
  """``(n_neurons, n_images, n_repeats)`` float64 from a ``.npy`` file.

  A 2-D file becomes one repeat. NaN marks a missing trial.
  """
  try:
    values = np.load(path, allow_pickle=False)
  except (OSError, ValueError) as e:
    raise ValueError(f"Cannot read responses {path} as a .npy array: {e}") from e
  if values.ndim not in (2, 3) or 0 in values.shape:
    raise ValueError(
      f"responses {path} must be (n_neurons, n_images) or (n_neurons, n_images, "
      f"n_repeats), got shape {values.shape}."
    )
  if not (
    np.issubdtype(values.dtype, np.floating) or np.issubdtype(values.dtype, np.integer)
  ):
    raise ValueError(f"responses {path} must be numbers, got dtype {values.dtype}.")
  values = values.astype(np.float64)
  if np.isinf(values).any():
    raise ValueError(f"responses {path} hold infinite values; use NaN for missing.")
  return values if values.ndim == 3 else values[:, :, None]


def to_assembly(
  trials: np.ndarray, stimulus_ids, labels: np.ndarray | None = None
) -> xr.DataArray:
  """An assembly from ``(n_neurons, n_images, n_repeats)`` NaN-padded trials."""
  finite = np.isfinite(trials)
  dead = ~finite.any(axis=(1, 2))
  if dead.any():
    raise ValueError(
      f"{int(dead.sum())} neurons have no response at all (all NaN), e.g. "
      f"neurons {np.nonzero(dead)[0][:5].tolist()} (0-based rows); drop them."
    )
  valid = finite.all(axis=0)  # (n_images, n_repeats)
  if not np.array_equal(valid, finite.any(axis=0)):
    image, _ = np.nonzero(valid != finite.any(axis=0))
    raise ValueError(
      "Missing trials (NaN) differ between neurons, e.g. at image "
      f"{int(image[0])} (0-based column): some neurons have the trial, others "
      "do not. Missing trials must be missing for every neuron; drop the "
      "neurons or trials that are incomplete."
    )
  unseen = ~valid.any(axis=1)
  if unseen.any():
    raise ValueError(
      f"{int(unseen.sum())} images have no response in any repeat, e.g. "
      f"{[stimulus_ids[i] for i in np.nonzero(unseen)[0][:3]]}; remove them "
      "from the responses and the images."
    )
  image, slot = np.nonzero(valid)
  ids = np.asarray(stimulus_ids)
  presentation = {"stimulus_id": ids[image], "repetition": slot}
  if labels is not None:
    presentation["object_name"] = np.asarray(labels)[image]
  n_neurons = trials.shape[0]
  return assembly_lib.make_assembly(
    trials[:, image, slot].T,
    presentation=presentation,
    neuroid={
      "neuroid_id": [f"n{k:04d}" for k in range(n_neurons)],
      "region": ["own"] * n_neurons,
    },
  )


def list_images(path: str | Path) -> dict[str, object]:
  """``{file name: source}`` of the images in a folder or zip.

  Files are found by base name anywhere below ``path``; two files with the
  same name before the extension (in different sub-folders, or e.g.
  ``a.png`` and ``a.jpg``) are an error, since they would share a
  ``stimulus_id``.
  """
  path = Path(path)
  if path.is_dir():
    # (name relative to the folder, source); only those parts can be hidden
    members = [
      (p.relative_to(path).as_posix(), p)
      for p in sorted(path.rglob("*"))
      if p.is_file() and not _hidden(p.relative_to(path).parts)
    ]
  elif path.is_file() and zipfile.is_zipfile(path):
    with zipfile.ZipFile(path) as archive:
      members = [
        (i.filename, (path, i.filename))
        for i in archive.infolist()
        if not i.is_dir() and not _hidden(PurePosixPath(i.filename).parts)
      ]
  else:
    raise ValueError(f"images {path} must be a folder or a .zip file.")
  names = [PurePosixPath(relative).name for relative, _ in members]
  others = sorted(n for n in names if Path(n).suffix.lower() not in IMAGE_SUFFIXES)
  if others:
    raise ValueError(
      f"images {path} holds {len(others)} files that are not images, e.g. "
      f"{others[:3]}; expected only {', '.join(IMAGE_SUFFIXES)} files."
    )
  if not members:
    raise ValueError(f"images {path} holds no image files.")
  by_stem: dict[str, list[str]] = {}
  for relative, _ in members:
    by_stem.setdefault(_stem(relative), []).append(relative)
  clashes = {stem: files for stem, files in by_stem.items() if len(files) > 1}
  if clashes:
    stem, files = next(iter(sorted(clashes.items())))
    raise ValueError(
      f"images {path} holds files with the same name before the extension "
      f"({len(clashes)} such names), e.g. {', '.join(files)}; a file's name "
      f"without extension ({stem!r}) is its stimulus_id and must be unique. "
      "Rename or remove the extra files."
    )
  return {PurePosixPath(relative).name: source for relative, source in members}


def _hidden(parts) -> bool:
  return any(p.startswith(".") or p == "__MACOSX" for p in parts)


def _stem(name: str) -> str:
  return PurePosixPath(name).stem


def _decode(source, name: str) -> np.ndarray:
  if isinstance(source, tuple):
    zip_path, member = source
    with zipfile.ZipFile(zip_path) as archive:
      data = archive.read(member)
  else:
    data = Path(source).read_bytes()
  try:
    with Image.open(io.BytesIO(data)) as image:
      return np.asarray(image.convert("RGB"))
  except (UnidentifiedImageError, OSError) as e:
    raise ValueError(f"Image {name!r} cannot be decoded: {e}") from e


def _image_order(files: dict, labels, images) -> tuple[list[str], np.ndarray | None]:
  """(file names in response-column order, labels or None)."""
  if labels is None:
    return sorted(files), None
  table = tables.read_table(labels, argument="labels")
  columns = list(table.columns)
  key = next((c for c in ("filename", "stimulus_id") if c in columns), None)
  if key is None:
    raise ValueError(
      f"labels {labels} needs a 'filename' or 'stimulus_id' column, got "
      f"{', '.join(columns)}."
    )
  rest = [c for c in columns if c != key]
  label = next(
    (c for c in LABEL_COLUMNS if c in rest), rest[0] if len(rest) == 1 else None
  )
  if label is None:
    raise ValueError(
      f"labels {labels} needs one label column, or one named "
      f"{' or '.join(LABEL_COLUMNS)}; got {', '.join(rest) or 'none'}."
    )
  by_key = {n if key == "filename" else _stem(n): n for n in files}
  wanted = table.column(key)
  missing = [w for w in wanted if w not in by_key]
  if missing:
    raise ValueError(
      f"{len(missing)} images listed in {labels} are not in {images}, e.g. "
      f"{missing[:3]}."
    )
  if len(set(wanted)) != len(wanted):
    raise ValueError(f"labels {labels} lists some images twice.")
  unlisted = sorted(set(by_key) - set(wanted))
  if unlisted:
    raise ValueError(
      f"{len(unlisted)} images in {images} are not listed in {labels}, e.g. "
      f"{unlisted[:3]}; the CSV must list every image, in response order."
    )
  return [by_key[w] for w in wanted], np.array(table.column(label), dtype=str)


def rdm_benchmark(
  assembly: xr.DataArray,
  stimuli: StimulusSet,
  *,
  identifier: str,
  visual_degrees: float,
  metric: str = "rsa",
  version: int = VERSION,
) -> RSABenchmark:
  """An ``RSABenchmark`` on the RDM of an assembly's repeat-averaged responses.

  The RDM is 1 - Pearson r between stimuli's patterns over neuroids (the
  benchmark builds model RDMs the same way). One RDM: no ceiling.

  Args:
    assembly: (n_presentations, n_neuroids) trials, see
      ``jaxscore.data.assembly``.
    stimuli: holding every stimulus of the assembly.
    identifier, visual_degrees, version: as ``RSABenchmark`` takes them.
    metric: ``"rsa"`` or ``"cka"``.
  """
  assembly_lib.validate_assembly(assembly, f"assembly of {identifier}")
  averaged = assembly_lib.average_repetitions(assembly)
  rdm = np.asarray(kernels.rdm(jnp.asarray(averaged.values, jnp.float32)), np.float64)
  if np.isnan(rdm).any():
    raise ValueError(
      f"Some stimuli of {identifier} evoke the same response in every neuroid, "
      "so their correlation distance is undefined; score with pls or ridge."
    )
  return RSABenchmark(
    identifier=identifier,
    version=version,
    rdms=rdm,
    stimulus_ids=tuple(averaged["stimulus_id"].values.tolist()),
    stimuli=stimuli,
    visual_degrees=visual_degrees,
    subjects=("rdm",),
    metric=metric,
  )
