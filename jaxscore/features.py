"""Features from anywhere, lined up with a benchmark's stimuli.

Features arrive as plain arrays with the ids of their rows, or as DataArrays
carrying a ``stimulus_id`` coordinate; rows may come in any order and include
stimuli the benchmark does not use. ``align_features`` checks them (real,
finite, non-empty) and returns the rows of the benchmark's stimuli in the
benchmark's order. Rows are never assumed to be in benchmark order: the
mismatched-ids failure is exactly the one that goes unnoticed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from jaxscore import activations


def align_features(
  values: np.ndarray | xr.DataArray,
  *,
  target_ids: Sequence[str],
  stimulus_ids: Sequence[str] | None = None,
  layer: str = "features",
  identifier: str = "the benchmark",
) -> np.ndarray:
  """Features as (n_stimuli, n_features) rows in the order of ``target_ids``.

  Args:
    values: (n_rows, ...) features of one layer, flattened per row; or a
      DataArray whose first dim carries a ``stimulus_id`` coordinate.
    target_ids: (n_stimuli,) the benchmark's stimulus order.
    stimulus_ids: (n_rows,) ids of the rows of a plain array; required for
      plain arrays, refused with DataArrays.
    layer: name used in error messages.
    identifier: benchmark name used in error messages.

  Raises:
    ValueError: naming the layer and what is wrong.
  """
  if isinstance(values, xr.DataArray):
    dim = values.dims[0]
    if "stimulus_id" not in values.coords or values["stimulus_id"].dims != (dim,):
      raise ValueError(
        f"DataArray features of layer {layer!r} need a 'stimulus_id' "
        f"coordinate along their first dim {dim!r}."
      )
    if stimulus_ids is not None:
      raise ValueError(
        "Pass stimulus_ids only with plain arrays; DataArray features carry their own."
      )
    stimulus_ids = values["stimulus_id"].values.tolist()
    values = values.values
  values = np.asarray(values)
  if values.ndim < 2:
    raise ValueError(
      f"Features of layer {layer!r} must be (n_stimuli, ...) with at least "
      f"2 dims, got shape {values.shape}."
    )
  values = values.reshape(len(values), -1)
  if not (
    np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.floating)
  ):
    raise ValueError(
      f"Features of layer {layer!r} must be real numbers (integer or "
      f"floating), got {values.dtype}."
    )
  if values.shape[1] == 0:
    raise ValueError(f"Layer {layer!r} has no features (shape {values.shape}).")
  activations.check_finite(values, f"layer {layer!r}")
  if stimulus_ids is None:
    raise ValueError(
      f"Plain-array features of layer {layer!r} need stimulus_ids naming "
      "their rows (pass benchmark.stimulus_ids if they follow the "
      "benchmark's order), or a DataArray with a stimulus_id coordinate."
    )
  ids = list(stimulus_ids)
  if len(ids) != len(values):
    raise ValueError(
      f"stimulus_ids has {len(ids)} entries for {len(values)} rows of layer {layer!r}."
    )
  if len(set(ids)) != len(ids):
    raise ValueError(f"stimulus_ids of layer {layer!r} has duplicates.")
  position = {s: i for i, s in enumerate(ids)}
  missing = [s for s in target_ids if s not in position]
  if missing:
    raise ValueError(
      f"The stimulus ids of layer {layer!r} do not cover {identifier}: "
      f"{len(missing)} of its {len(target_ids)} stimuli are missing, e.g. "
      f"{missing[:3]}. (Extra stimuli are allowed and ignored.)"
    )
  order = np.array([position[s] for s in target_ids])
  if np.array_equal(order, np.arange(len(values))):
    return values  # already in order: no copy
  return values[order]
