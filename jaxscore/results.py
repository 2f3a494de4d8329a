"""Writing scores to disk, atomically.

A score of model ``M`` on benchmark ``B`` becomes two files in
``<directory>/<B>/``:

- ``<M>.json``: the summary a person reads. Keys: ``format_version``,
  ``model``, ``benchmark``, ``benchmark_version``, ``normalization``,
  ``ceiling`` (``{center, error, per_split}`` or null), ``best_layer``,
  ``layers`` (a list of ``{layer, n_features, raw, raw_error, ceiled,
  n_components, per_split}`` and, after a bootstrap, ``interval``:
  ``{level, n_boot, raw, raw_bca, ceiled}``), ``notes``, ``run`` (time,
  jaxscore, jax and backend versions, plus what the caller adds: wall
  seconds, dtype) and, when two models were compared, ``comparison``.
- ``<M>.nc``: the per-split, per-neuroid values as NetCDF (h5netcdf):
  ``r (layer, split, neuroid)``; with a ceiling, ``ceiling (split,
  neuroid)``; for ridge, the chosen penalties ``alpha (layer, split,
  neuroid)``.

A time-binned score (``jaxscore.time_bins``) is written by
``write_time_binned``: each bin as an ordinary result of the bin's benchmark
``<B>.t<start>-<end>``, plus ``<directory>/<B>/<M>.json`` with
``format_version``, ``model``, ``benchmark``, ``benchmark_version`` and
``time_bins``, a list of ``{time_bin, start, end, benchmark, ceiling,
best_layer, raw, raw_error, ceiled, result}`` (``result``: the bin's JSON,
relative to ``directory``).

Each file is written to a temporary name in the same folder and renamed, so a
crash never leaves a truncated result and a reader never sees a partial one.
The ``.nc`` is renamed first and the ``.json`` last: a JSON file marks a
complete result. JSON is strict: a value that is not finite is ``null``.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import json
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jax
import numpy as np
import xarray as xr

from jaxscore.benchmark import BenchmarkScore
from jaxscore.rsa_benchmark import RSABenchmarkScore
from jaxscore.time_bins import TimeBinnedScore

FORMAT_VERSION = 1


def _run_info(run: dict[str, Any]) -> dict:
  return {
    "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    "jaxscore": importlib.metadata.version("jaxscore"),
    "jax": jax.__version__,
    "backend": jax.default_backend(),
    **run,
  }


def rsa_to_dict(score: RSABenchmarkScore, *, model: str, run: dict) -> dict:
  """The JSON summary of an RDM benchmark's score.

  Like ``to_dict``, with ``metric``, ``ceiling`` as ``{lower, upper, bound}``
  (or null) and per layer ``{layer, n_features, raw, raw_error, ceiled,
  group, per_subject}``; ``raw_error`` is a jackknife over stimuli.
  """
  ceiling = None
  if score.ceiling is not None:
    ceiling = {
      "lower": score.ceiling.lower,
      "upper": score.ceiling.upper,
      "bound": score.ceiling.bound,
    }
  return {
    "format_version": FORMAT_VERSION,
    "model": model,
    "benchmark": score.benchmark,
    "benchmark_version": score.version,
    "metric": score.metric,
    "ceiling": ceiling,
    "best_layer": score.best.layer,
    "layers": [
      {
        "layer": s.layer,
        "n_features": s.n_features,
        "raw": s.raw,
        "raw_error": None if np.isnan(s.error) else s.error,
        "ceiled": s.ceiled,
        "group": s.group,
        "per_subject": np.asarray(s.per_subject).tolist(),
      }
      for s in score.layers
    ],
    "subjects": list(score.subjects),
    "notes": list(score.notes),
    "run": _run_info(run),
  }


def to_dict(
  score: BenchmarkScore,
  *,
  model: str,
  run: dict[str, Any],
  extra: Extra | None = None,
) -> dict:
  """The JSON summary of ``score`` (see the module docstring)."""
  extra = extra or Extra()
  ceiling = None
  if score.ceiling is not None:
    summary = score.ceiling.summary
    ceiling = {
      "center": summary.center,
      "error": summary.error,
      "per_split": summary.per_split.tolist(),
    }
    if extra.ceiling_interval is not None:
      ceiling["interval"] = list(extra.ceiling_interval)
  summary = {
    "format_version": FORMAT_VERSION,
    "model": model,
    "benchmark": score.benchmark,
    "benchmark_version": score.version,
    "normalization": score.normalization,
    "ceiling": ceiling,
    "best_layer": score.best.layer,
    "layers": [
      {
        "layer": s.layer,
        "n_features": s.n_features,
        "raw": s.raw.center,
        "raw_error": s.raw.error,
        "ceiled": s.ceiled,
        "n_components": s.n_components,
        "per_split": s.raw.per_split.tolist(),
        **_interval(extra.intervals.get(s.layer)),
      }
      for s in score.layers
    ],
    "notes": list(score.notes),
    "run": _run_info(run),
  }
  if extra.comparison is not None:
    summary["comparison"] = extra.comparison
  return summary


@dataclasses.dataclass(frozen=True)
class Extra:
  """Optional parts of a regression summary.

  Attributes:
    intervals: {layer: uncertainty.Interval} from a bootstrap.
    ceiling_interval: (low, high) bootstrap interval of the ceiling.
    comparison: a paired comparison with another model, as a plain dict.
  """

  intervals: dict = dataclasses.field(default_factory=dict)
  ceiling_interval: tuple[float, float] | None = None
  comparison: dict | None = None


def _interval(interval) -> dict:
  if interval is None:
    return {}
  return {
    "interval": {
      "level": interval.level,
      "n_boot": interval.n_boot,
      "raw": list(interval.raw),
      "raw_bca": list(interval.raw_bca),
      "ceiled": None if interval.ceiled is None else list(interval.ceiled),
    }
  }


def to_dataset(score: BenchmarkScore | RSABenchmarkScore) -> xr.Dataset:
  """Per-split, per-neuroid values of ``score`` as an xarray Dataset (for an
  RDM benchmark: ``similarity (layer, subject)``)."""
  layers = [s.layer for s in score.layers]
  if isinstance(score, RSABenchmarkScore):
    return xr.Dataset(
      {
        "similarity": (
          ("layer", "subject"),
          np.stack([np.asarray(s.per_subject) for s in score.layers]),
        )
      },
      coords={"layer": layers, "subject": list(score.subjects)},
      attrs={"benchmark": score.benchmark, "metric": score.metric},
    )
  data = {"r": (("layer", "split", "neuroid"), np.stack([s.r for s in score.layers]))}
  if score.ceiling is not None:
    data["ceiling"] = (("split", "neuroid"), score.ceiling.values)
  if all(s.alpha is not None for s in score.layers):
    data["alpha"] = (
      ("layer", "split", "neuroid"),
      np.stack([s.alpha for s in score.layers]),
    )
  return xr.Dataset(
    data,
    coords={"layer": layers, "neuroid_id": ("neuroid", list(score.neuroid_ids))},
    attrs={"benchmark": score.benchmark, "benchmark_version": score.version},
  )


_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def check_label(label: str, what: str = "model") -> None:
  """Refuses names that cannot be one file name (a ``/``, a leading dot)."""
  if not _LABEL.fullmatch(label):
    raise ValueError(
      f"The {what} label {label!r} must be a plain file name: letters, digits, "
      "'.', '_' and '-', not starting with '.' or '-'."
    )


def write(
  score: BenchmarkScore | RSABenchmarkScore,
  *,
  model: str,
  directory: Path,
  run: dict[str, Any],
  extra: Extra | None = None,
) -> Path:
  """Writes ``<directory>/<benchmark>/<model>.json`` and ``.nc``; returns json."""
  check_label(model)
  folder = Path(directory) / score.benchmark
  folder.mkdir(parents=True, exist_ok=True)
  if isinstance(score, RSABenchmarkScore):
    summary = rsa_to_dict(score, model=model, run=run)
  else:
    summary = to_dict(score, model=model, run=run, extra=extra)
  summary = json_text(summary)
  _atomic(
    folder / f"{model}.nc", lambda p: to_dataset(score).to_netcdf(p, engine="h5netcdf")
  )
  target = folder / f"{model}.json"
  _atomic(target, lambda p: Path(p).write_text(summary + "\n"))
  return target


def check_writable(directory: str | os.PathLike) -> None:
  """Refuses a results folder that cannot be created or written to, before
  any work is done (ValueError naming it)."""
  path = Path(directory)
  try:
    path.mkdir(parents=True, exist_ok=True)
    fd, probe = tempfile.mkstemp(dir=path, prefix=".write-check.")
  except OSError as e:
    raise ValueError(f"results folder {os.fspath(path)!r} is not writable: {e}") from e
  os.close(fd)
  os.unlink(probe)


def jsonable(value):
  """``value`` with arrays and NumPy scalars as plain Python, dict keys as
  strings, and NaN or infinite floats as None, so that it is strict JSON."""
  if isinstance(value, dict):
    return {str(k): jsonable(v) for k, v in value.items()}
  if isinstance(value, np.ndarray):
    return jsonable(value.tolist())
  if isinstance(value, Iterable) and not isinstance(value, str | bytes):
    return [jsonable(v) for v in value]
  if isinstance(value, np.generic):
    value = value.item()
  if isinstance(value, float) and not np.isfinite(value):
    return None
  return value


def json_text(summary: dict) -> str:
  """Strict JSON (no NaN literals, which most readers refuse) of a summary."""
  return json.dumps(jsonable(summary), indent=2, allow_nan=False)


def _atomic(target: Path, write_to) -> None:
  fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
  os.close(fd)
  os.chmod(tmp, 0o644)  # mkstemp makes it private; a result is for sharing
  try:
    write_to(tmp)
    os.replace(tmp, target)
  finally:
    if os.path.exists(tmp):
      os.unlink(tmp)


def write_time_binned(
  score: TimeBinnedScore,
  *,
  model: str,
  directory: Path,
  run: dict[str, Any],
) -> Path:
  """Writes every bin's result and the per-bin summary; returns the summary."""
  check_label(model)
  entries = []
  for label, start, end, bin_score in zip(
    score.bins, score.starts, score.ends, score.scores, strict=True
  ):
    path = write(bin_score, model=model, directory=directory, run=run)
    best = bin_score.best
    ceiling = bin_score.ceiling
    entries.append(
      {
        "time_bin": label,
        "start": start,
        "end": end,
        "benchmark": bin_score.benchmark,
        "ceiling": None if ceiling is None else ceiling.summary.center,
        "best_layer": best.layer,
        "raw": best.raw.center,
        "raw_error": best.raw.error,
        "ceiled": best.ceiled,
        "result": str(path.relative_to(directory)),
      }
    )
  summary = {
    "format_version": FORMAT_VERSION,
    "model": model,
    "benchmark": score.benchmark,
    "benchmark_version": score.version,
    "time_bins": entries,
    "run": _run_info(run),
  }
  folder = Path(directory) / score.benchmark
  folder.mkdir(parents=True, exist_ok=True)
  target = folder / f"{model}.json"
  text = json_text(summary) + "\n"
  _atomic(target, lambda p: Path(p).write_text(text))
  return target
