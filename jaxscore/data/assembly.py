"""Neural assemblies: recorded responses as ``presentation x neuroid`` arrays.

An assembly is a plain ``xarray.DataArray`` with dims ``("presentation",
"neuroid")``. Presentations carry ``stimulus_id`` and ``repetition`` (plus any
labels such as ``object_name``); neuroids carry ``neuroid_id`` and ``region``.
One presentation is one trial: a stimulus shown ``k`` times appears in ``k``
rows with repetitions ``0 .. k-1``. Missing trials are absent rows, never
zeros or NaN rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import xarray as xr

PRESENTATION_COORDS = ("stimulus_id", "repetition")
NEUROID_COORDS = ("neuroid_id", "region")


def make_assembly(
  responses: np.ndarray,
  presentation: Mapping[str, Sequence],
  neuroid: Mapping[str, Sequence],
) -> xr.DataArray:
  """Builds and validates an assembly.

  Args:
    responses: (n_presentations, n_neuroids) responses, one row per trial.
    presentation: coords along presentations; needs ``stimulus_id`` and
      ``repetition``.
    neuroid: coords along neuroids; needs ``neuroid_id`` and ``region``.
  """
  responses = np.asarray(responses)
  coords = {k: ("presentation", np.asarray(v)) for k, v in presentation.items()}
  coords |= {k: ("neuroid", np.asarray(v)) for k, v in neuroid.items()}
  assembly = xr.DataArray(responses, dims=("presentation", "neuroid"), coords=coords)
  validate_assembly(assembly)
  return assembly


def validate_assembly(assembly: xr.DataArray, name: str = "assembly") -> None:
  """Raises ValueError unless ``assembly`` has the layout described above."""
  if not isinstance(assembly, xr.DataArray):
    raise ValueError(
      f"{name} must be an xarray.DataArray, got {type(assembly).__name__}."
    )
  if assembly.dims != ("presentation", "neuroid"):
    raise ValueError(
      f"{name} must have dims ('presentation', 'neuroid'), got {assembly.dims}."
    )
  for dim, required in (
    ("presentation", PRESENTATION_COORDS),
    ("neuroid", NEUROID_COORDS),
  ):
    for coord in required:
      if coord not in assembly.coords or assembly[coord].dims != (dim,):
        raise ValueError(f"{name} needs a {coord!r} coordinate along {dim!r}.")
  if not np.all(np.isfinite(assembly.values)):
    bad = int(np.sum(~np.isfinite(assembly.values)))
    raise ValueError(
      f"{name} holds {bad} NaN or infinite responses; drop missing trials "
      "instead of storing them as NaN."
    )
  ids = assembly["neuroid_id"].values
  if len(set(ids.tolist())) != len(ids):
    raise ValueError(f"{name} has duplicate neuroid_id values.")
  pairs = set(
    zip(
      assembly["stimulus_id"].values.tolist(),
      assembly["repetition"].values.tolist(),
      strict=True,
    )
  )
  if len(pairs) != assembly.sizes["presentation"]:
    raise ValueError(f"{name} has duplicate (stimulus_id, repetition) pairs.")


def require_presentation_coord(
  assembly: xr.DataArray, coord: str, *, argument: str, name: str = "assembly"
) -> None:
  """Raises ValueError unless ``coord`` is a coordinate along presentations.

  Args:
    assembly: the assembly (``attrs["dropped_coords"]``, where a reader such
      as ``jaxscore.data.brainio`` lists the coords it dropped, explains a
      missing one).
    coord: the coordinate wanted, e.g. ``"object_name"``.
    argument: the argument that named it, e.g. ``"stratify_by"``.
    name: what to call the assembly in the message.
  """
  if coord in assembly.coords and assembly[coord].dims == ("presentation",):
    return
  present = sorted(n for n, c in assembly.coords.items() if c.dims == ("presentation",))
  message = (
    f"{argument}={coord!r} names no presentation coordinate of {name}; its "
    f"presentation coords are {', '.join(present) or 'none'}."
  )
  if coord in list(assembly.attrs.get("dropped_coords", ())):
    message += (
      f" {coord!r} was dropped when the assembly was read because its value "
      "differs between repetitions of some stimulus (see "
      f"attrs['dropped_coords']); give it one value per stimulus in the file, "
      f"or pass {argument}=None."
    )
  else:
    message += f" Pass {argument}=None to split without strata."
  raise ValueError(message)


def stimulus_order(assembly: xr.DataArray) -> np.ndarray:
  """Unique stimulus ids in order of first presentation."""
  return _first_presentations(assembly)[0]


def _first_presentations(assembly: xr.DataArray) -> tuple[np.ndarray, np.ndarray]:
  """(unique ids in order of first showing, row of each first showing)."""
  ids = assembly["stimulus_id"].values
  _, first = np.unique(ids, return_index=True)
  first = np.sort(first)
  return ids[first], first


def average_repetitions(assembly: xr.DataArray) -> xr.DataArray:
  """Mean over the repetitions of each stimulus, in order of first showing.

  Presentation coords other than ``repetition`` are kept; they must be
  constant per stimulus, as labels are, or a ValueError names the coord.
  """
  order, first = _first_presentations(assembly)
  codes = _codes(assembly, order)
  counts = np.bincount(codes, minlength=len(order)).astype(np.float64)
  sums = np.zeros((len(order), assembly.sizes["neuroid"]))
  np.add.at(sums, codes, assembly.values)
  coords = {}
  for name, coord in assembly.coords.items():
    if coord.dims != ("presentation",) or name == "repetition":
      continue
    values = coord.values[first]
    if not np.array_equal(coord.values, values[codes]):
      raise ValueError(
        f"Presentation coord {name!r} differs between repetitions of one "
        "stimulus; only per-stimulus labels survive averaging."
      )
    coords[name] = ("presentation", values)
  coords |= {
    name: coord for name, coord in assembly.coords.items() if coord.dims == ("neuroid",)
  }
  return xr.DataArray(
    sums / counts[:, None], dims=("presentation", "neuroid"), coords=coords
  )


def repetition_array(assembly: xr.DataArray) -> np.ndarray:
  """Trials as a dense ``(n_reps, n_stimuli, n_neuroids)`` array.

  Stimuli follow ``stimulus_order``; repetition slots a stimulus was not shown
  in are NaN. ``n_reps`` is the number of distinct repetition values.
  """
  order = stimulus_order(assembly)
  codes = _codes(assembly, order)
  reps, rep_codes = np.unique(assembly["repetition"].values, return_inverse=True)
  dense = np.full((len(reps), len(order), assembly.sizes["neuroid"]), np.nan)
  dense[rep_codes, codes] = assembly.values
  return dense


def _codes(assembly: xr.DataArray, order: np.ndarray) -> np.ndarray:
  position = {s: i for i, s in enumerate(order.tolist())}
  return np.array([position[s] for s in assembly["stimulus_id"].values.tolist()])
