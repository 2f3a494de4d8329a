"""Brain-Score's public data files (the brainio formats), read from disk.

Brain-Score publishes each recording as two parts, both of which a user can
hold locally (e.g. MajajHong2015, FreemanZiemba2013):

- an assembly: a NetCDF file holding one DataArray with dims
  ``presentation x neuroid`` (and usually ``time_bin``). Its coordinates were
  pandas MultiIndexes in memory and are stored flattened: every level is a
  plain coordinate on its dim (``stimulus_id``, ``object_name``,
  ``repetition``... on presentations; ``neuroid_id``, ``region``... on
  neuroids; ``time_bin_start``, ``time_bin_end`` on time bins).
- a stimulus set: a CSV with one row per image (``stimulus_id``, the image's
  file name and metadata columns) and a zip of the images.

``load_assembly`` turns the first into jaxscore's assembly (see
``jaxscore.data.assembly``); ``load_stimulus_set`` turns the second into a
``StimulusSet``. Together they build a ``NeuralBenchmark`` (or, with a
``time_bin`` dim, a ``jaxscore.time_bins.TimeBinnedBenchmark``)::

  assembly = brainio.load_assembly("assy_dicarlo_MajajHong2015_public.nc",
                                   region="IT")
  stimuli = brainio.load_stimulus_set("stimulus_dicarlo_hvm-public.csv",
                                      "stimulus_dicarlo_hvm-public.zip")
  benchmark = NeuralBenchmark("majajhong2015.IT-pls", 1, assembly, stimuli,
                              visual_degrees=8.0)

Older files name the stimulus ``image_id`` instead of ``stimulus_id``; both
are read. Files without a ``repetition`` coord get one by counting each
stimulus's presentations in file order.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from jaxscore.data import assembly as assembly_lib
from jaxscore.data import tables
from jaxscore.data.stimuli import StimulusSet, read_zip_images

ID_COLUMNS = ("stimulus_id", "image_id")  # current name first
# Image file name columns of brainio stimulus CSVs, current name first.
FILENAME_COLUMNS = (
  "filename",
  "image_file_name",
  "image_path_within_store",
  "file_name",
)
_DIMS = ("presentation", "neuroid")
_TIME_COORDS = ("time_bin_start", "time_bin_end")


def load_assembly(
  path: str | Path,
  *,
  region: str | None = None,
  variable: str | None = None,
  keep_time_bins: bool = False,
) -> xr.DataArray:
  """Reads a brainio NetCDF assembly as a jaxscore assembly.

  Args:
    path: the ``.nc`` file.
    region: the region to keep when the file holds several (required then),
      or the region to label the neuroids with when the file names none.
    variable: the data variable to read when the file holds several.
    keep_time_bins: keep a ``time_bin`` dim of one bin (by default a single
      bin is dropped and its bounds kept in ``attrs``).

  Returns:
    ``(n_presentations, n_neuroids)`` trials, or ``(n_presentations,
    n_neuroids, n_time_bins)`` when the file has several time bins (coords
    ``time_bin_start``, ``time_bin_end`` on ``time_bin``). Presentations carry
    ``stimulus_id`` (strings), ``repetition`` and every coord that is
    constant over a stimulus's repetitions (e.g. ``object_name``); per-trial
    coords that vary are dropped and listed in ``attrs["dropped_coords"]``.
    Presentations with no response at all (NaN everywhere) are dropped.

  Raises:
    ValueError: the file lacks a required dim or coord, holds several regions
      and ``region`` is None, holds NaN that is not a whole missing trial, an
      infinite value or a ``repetition`` that is not a whole number.
  """
  path = Path(path)
  with xr.open_dataset(path, engine="h5netcdf") as dataset:
    raw = _pick_variable(dataset, variable, path).load()
  return from_brainio(raw, region=region, keep_time_bins=keep_time_bins, name=path)


def from_brainio(
  raw: xr.DataArray,
  *,
  region: str | None = None,
  keep_time_bins: bool = False,
  name: str | Path = "assembly",
) -> xr.DataArray:
  """Converts an in-memory brainio-style DataArray; see ``load_assembly``."""
  dims = set(raw.dims)
  extra = dims - {*_DIMS, "time_bin"}
  if not set(_DIMS) <= dims or extra:
    raise ValueError(
      f"{name} must have dims presentation x neuroid [x time_bin], got {raw.dims}."
    )
  raw = _flatten_indexes(raw)
  raw = raw.transpose(*_DIMS, *(("time_bin",) if "time_bin" in dims else ()))
  raw = _stimulus_ids(raw, name)
  raw = _select_region(raw, region, name)
  raw = _drop_missing_presentations(raw, name)
  if "repetition" not in raw.coords:
    raw = raw.assign_coords(repetition=("presentation", count_repetitions(raw)))
  raw = _integer_repetitions(raw, name)
  raw, dropped = _per_stimulus_coords(raw)
  raw.attrs = {**raw.attrs, "dropped_coords": list(dropped)}
  if "time_bin" in raw.dims:
    for coord in _TIME_COORDS:
      if coord not in raw.coords:
        raise ValueError(
          f"{name} has a time_bin dim but no {coord!r} coordinate on it."
        )
    if raw.sizes["time_bin"] == 1 and not keep_time_bins:
      bounds = [float(raw[c].values[0]) for c in _TIME_COORDS]
      raw = raw.isel(time_bin=0, drop=True)
      raw.attrs["time_bin"] = bounds
  if "time_bin" in raw.dims:
    for b in range(raw.sizes["time_bin"]):
      assembly_lib.validate_assembly(
        raw.isel(time_bin=b, drop=True), f"{name} (time bin {b})"
      )
  else:
    assembly_lib.validate_assembly(raw, str(name))
  return raw


def count_repetitions(assembly: xr.DataArray) -> np.ndarray:
  """(n_presentations,) 0, 1, 2... for each stimulus's showings, in order."""
  seen: dict[str, int] = {}
  out = np.empty(assembly.sizes["presentation"], dtype=np.int64)
  for i, stimulus in enumerate(assembly["stimulus_id"].values.tolist()):
    out[i] = seen.get(stimulus, 0)
    seen[stimulus] = out[i] + 1
  return out


def _pick_variable(dataset: xr.Dataset, variable: str | None, path) -> xr.DataArray:
  names = list(dataset.data_vars)
  if variable is not None:
    if variable not in names:
      raise ValueError(
        f"variable={variable!r} is not in {path}; it holds {', '.join(names)}."
      )
    return dataset[variable]
  if len(names) != 1:
    raise ValueError(
      f"{path} holds {len(names)} data variables ({', '.join(names)}); choose "
      "one with variable=."
    )
  return dataset[names[0]]


def _flatten_indexes(raw: xr.DataArray) -> xr.DataArray:
  """Plain coords only: MultiIndexes split into levels, dim coords dropped.

  Older xarray kept a reset MultiIndex as a coord named ``<dim>_``, and some
  files hold integer dim coords; neither carries information we use.
  """
  indexed = [name for name in raw.indexes if name in raw.dims]
  if indexed:
    raw = raw.reset_index(indexed)
  drop = [
    name
    for name in raw.coords
    if name in raw.dims or (name.rstrip("_") in raw.dims and name.endswith("_"))
  ]
  return raw.drop_vars(drop)


def _stimulus_ids(raw: xr.DataArray, name) -> xr.DataArray:
  for column in ID_COLUMNS:
    if column in raw.coords and raw[column].dims == ("presentation",):
      ids = raw[column].values.astype(str)
      raw = raw.drop_vars([c for c in ID_COLUMNS if c in raw.coords])
      return raw.assign_coords(stimulus_id=("presentation", ids))
  raise ValueError(
    f"{name} needs a 'stimulus_id' (or older 'image_id') coordinate along "
    f"'presentation'; its presentation coords are {_coords_on(raw, 'presentation')}."
  )


def _select_region(raw: xr.DataArray, region: str | None, name) -> xr.DataArray:
  if "neuroid_id" not in raw.coords or raw["neuroid_id"].dims != ("neuroid",):
    raise ValueError(
      f"{name} needs a 'neuroid_id' coordinate along 'neuroid'; its neuroid "
      f"coords are {_coords_on(raw, 'neuroid')}."
    )
  raw = raw.assign_coords(neuroid_id=("neuroid", raw["neuroid_id"].values.astype(str)))
  if "region" not in raw.coords:
    if region is None:
      raise ValueError(
        f"{name} names no region for its neuroids; pass region= to label them."
      )
    return raw.assign_coords(region=("neuroid", [region] * raw.sizes["neuroid"]))
  regions = raw["region"].values.astype(str)
  found = sorted(set(regions.tolist()))
  if region is None:
    if len(found) > 1:
      raise ValueError(
        f"{name} holds several regions ({', '.join(found)}); choose one with region=."
      )
    region = found[0]
  if region not in found:
    raise ValueError(
      f"region={region!r} is not in {name}; its regions are {', '.join(found)}."
    )
  keep = regions == region
  return raw.isel(neuroid=np.nonzero(keep)[0]).assign_coords(
    region=("neuroid", regions[keep])
  )


def _drop_missing_presentations(raw: xr.DataArray, name) -> xr.DataArray:
  values = raw.values.reshape(raw.sizes["presentation"], raw.sizes["neuroid"], -1)
  infinite = np.isinf(values).any(axis=(1, 2))
  if infinite.any():
    ids = raw["stimulus_id"].values[infinite].tolist()
    raise ValueError(
      f"{int(infinite.sum())} presentations of {name} hold infinite responses, "
      f"e.g. of stimuli {ids[:3]}; expected finite numbers, with NaN (not inf) "
      "for every neuroid of a missing trial."
    )
  missing = np.isnan(values)
  empty = missing.all(axis=(1, 2))
  dead = missing.all(axis=(0, 2))
  if dead.any():
    ids = raw["neuroid_id"].values[dead].tolist()
    raise ValueError(
      f"{len(ids)} neuroids of {name} have no response (all NaN), e.g. "
      f"{ids[:5]}; drop them before scoring."
    )
  partial = ~empty & missing.any(axis=(1, 2))
  if partial.any():
    raise ValueError(
      f"{int(partial.sum())} presentations of {name} hold NaN for some "
      "neuroids or time bins but not all; jaxscore scores only neuroids "
      "recorded on every trial kept. Select the neuroids (or trials) that are "
      "complete."
    )
  return raw.isel(presentation=np.nonzero(~empty)[0]) if empty.any() else raw


def _integer_repetitions(raw: xr.DataArray, name) -> xr.DataArray:
  """The ``repetition`` coord as int64; other values are refused."""
  if raw["repetition"].dims != ("presentation",):
    raise ValueError(
      f"{name} has a 'repetition' coordinate along {raw['repetition'].dims}; "
      "expected one along 'presentation'."
    )
  values = raw["repetition"].values
  if np.issubdtype(values.dtype, np.integer):
    return raw.assign_coords(repetition=("presentation", values.astype(np.int64)))
  if np.issubdtype(values.dtype, np.floating):
    whole = np.isfinite(values) & (values == np.round(values))
    if whole.all():
      return raw.assign_coords(repetition=("presentation", values.astype(np.int64)))
    bad = values[~whole]
    raise ValueError(
      f"{name} has {bad.size} non-integer 'repetition' values, e.g. "
      f"{bad[:3].tolist()}; expected whole numbers 0, 1, 2... counting each "
      "stimulus's showings."
    )
  raise ValueError(
    f"{name} has a 'repetition' coordinate of dtype {values.dtype}; expected "
    "integers 0, 1, 2... counting each stimulus's showings."
  )


def _per_stimulus_coords(raw: xr.DataArray) -> tuple[xr.DataArray, list[str]]:
  """Drops presentation coords that vary between a stimulus's repetitions."""
  ids = raw["stimulus_id"].values
  _, first, codes = np.unique(ids, return_index=True, return_inverse=True)
  dropped = []
  for name, coord in raw.coords.items():
    if coord.dims != ("presentation",) or name in ("stimulus_id", "repetition"):
      continue
    if not np.array_equal(coord.values, coord.values[first][codes]):
      dropped.append(name)
  return raw.drop_vars(dropped), dropped


def _coords_on(raw: xr.DataArray, dim: str) -> list[str]:
  return [n for n, c in raw.coords.items() if c.dims == (dim,)]


def load_stimulus_set(
  csv_path: str | Path,
  zip_path: str | Path,
  *,
  identifier: str | None = None,
  stimulus_ids: Sequence[str] | None = None,
) -> StimulusSet:
  """Reads a brainio stimulus set: a CSV of metadata and a zip of images.

  Args:
    csv_path: UTF-8, one row per image; an id column (``stimulus_id``, or
      older ``image_id``), a file name column (one of ``FILENAME_COLUMNS``),
      both filled in every row, and any metadata, which becomes the set's
      labels (as strings; an empty metadata cell stays empty).
    zip_path: the images, found by base name anywhere inside the zip.
    identifier: name of the set; default the CSV's stem.
    stimulus_ids: read only these images (e.g. an assembly's stimuli), in
      this order; default every row of the CSV.

  Raises:
    ValueError: naming a CSV that is missing or not UTF-8, a short row or an
      empty id or file name (with its line), the missing column, duplicate
      ids, unknown ids, or images missing from the zip or not decodable.
  """
  csv_path = Path(csv_path)
  table = tables.read_table(csv_path, argument="csv_path")
  columns = list(table.columns)
  id_column = next((c for c in ID_COLUMNS if c in columns), None)
  file_column = next((c for c in FILENAME_COLUMNS if c in columns), None)
  for what, found, valid in (
    ("id", id_column, ID_COLUMNS),
    ("image file name", file_column, FILENAME_COLUMNS),
  ):
    if found is None:
      raise ValueError(
        f"{csv_path} has no {what} column: expected one of "
        f"{', '.join(valid)}, got columns {', '.join(columns)}."
      )
  ids = table.column(id_column)
  files = table.column(file_column)
  rows = list(table.rows)
  if len(set(ids)) != len(ids):
    raise ValueError(f"{csv_path} lists some {id_column} values twice.")
  if stimulus_ids is not None:
    position = {s: i for i, s in enumerate(ids)}
    unknown = [s for s in stimulus_ids if s not in position]
    if unknown:
      raise ValueError(
        f"{len(unknown)} of the requested stimulus_ids are not in {csv_path}, "
        f"e.g. {unknown[:3]}."
      )
    rows = [rows[position[s]] for s in stimulus_ids]
    files = [files[position[s]] for s in stimulus_ids]
    ids = list(stimulus_ids)
  names = [Path(file).name for file in files]
  labels = {
    c: np.array([row[c] for row in rows], dtype=str)
    for c in columns
    if c not in (*ID_COLUMNS, *FILENAME_COLUMNS) and c
  }
  return StimulusSet(
    identifier=identifier or csv_path.stem,
    stimulus_ids=tuple(ids),
    images=read_zip_images(Path(zip_path), names),
    labels=labels,
  )
