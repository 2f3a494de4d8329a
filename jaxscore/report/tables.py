"""Store rows and training logs as tidy tables: profiles, leaderboard, commits.

Regions come from ``REGIONS``, keyed on benchmark name prefixes; a benchmark
no prefix matches belongs to ``OTHER``, which has no mean of its own and is
left out of the overall mean.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jaxscore import store as store_lib

REGIONS = (
  ("cowley2023.V4", "V4"),
  ("kriegeskorte2008.hIT-", "IT"),
  ("kriegeskorte2008.mIT-", "IT"),
)
OTHER = "other"
Z_95 = 1.96
_PROFILE_PROTOCOLS = ("all", "commit-select")


def region_of(benchmark: str) -> str:
  """The region of ``benchmark`` by ``REGIONS``, else ``OTHER``."""
  for prefix, region in REGIONS:
    if benchmark.startswith(prefix):
      return region
  return OTHER


def load_rows(path: str | Path) -> list[dict]:
  """Every row of the store at ``path``; refuses a missing file or no rows."""
  path = Path(path)
  if not path.is_file():
    raise ValueError(f"store must be an existing SQLite file, got {str(path)!r}.")
  # Looked at read-only first: opening a Store would add its table to a
  # foreign database.
  try:
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
      found = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'scores'"
      ).fetchone()
    finally:
      db.close()
  except sqlite3.DatabaseError as e:
    found, reason = None, str(e)
  else:
    reason = "no scores table"
  if found is None:
    raise ValueError(
      f"store must be a jaxscore SQLite store, got {str(path)!r} ({reason})."
    )
  with store_lib.Store(path) as store:
    rows = store.rows()
  if not rows:
    raise ValueError(
      f"store {str(path)!r} holds no rows; fill it with launch.sweep first."
    )
  return rows


@dataclasses.dataclass(frozen=True)
class Profile:
  """One model's scores on one benchmark, layer by layer.

  Attributes:
    model: the model's label (its name, with a short parameters hash when
      the store holds several parameter sets under that name).
    benchmark: the benchmark's identifier.
    protocol: ``"all"`` or ``"commit-select"`` (see ``jaxscore.store``).
    layers: (n_layers,) layer names in the order their rows were written.
    raw: (n_layers,) raw scores (NaN where not finite).
    error: (n_layers,) their errors (NaN where none).
    ceiled: (n_layers,) ceiled scores (NaN without a ceiling).
    ceiling: the benchmark's ceiling, or None.
    kind: ``"regression"`` or ``"rsa"``.
    metric: what ``raw`` is, for an axis label.
  """

  model: str
  benchmark: str
  protocol: str
  layers: tuple[str, ...]
  raw: np.ndarray
  error: np.ndarray
  ceiled: np.ndarray
  ceiling: float | None
  kind: str
  metric: str

  def selection(self) -> np.ndarray:
    """(n_layers,) what the best layer maximises: ceiled, else raw."""
    return self.raw if self.ceiling is None else self.ceiled

  def best(self) -> int | None:
    """Index of the best layer, or None when no layer has a finite score."""
    values = self.selection()
    if not np.isfinite(values).any():
      return None
    return int(np.nanargmax(values))


@dataclasses.dataclass(frozen=True)
class Cell:
  """A leaderboard entry: the best layer's score and which score it is."""

  value: float
  kind: str  # "ceiled" or "raw"
  layer: str


@dataclasses.dataclass(frozen=True)
class Leaderboard:
  """Models x benchmarks, with region and overall means.

  Attributes:
    models: model labels, best overall first (no overall last, by name).
    benchmarks: benchmark identifiers grouped by region (``OTHER`` last).
    regions: the regions with a mean (every region but ``OTHER``).
    cells: (model, benchmark) -> Cell, where the model has a score.
    region_scores: (model, region) -> mean over the region's benchmarks, or
      None when the model lacks one of them.
    overall: model -> mean over ``regions``, or None when one is missing.
  """

  models: tuple[str, ...]
  benchmarks: tuple[str, ...]
  regions: tuple[str, ...]
  cells: dict[tuple[str, str], Cell]
  region_scores: dict[tuple[str, str], float | None]
  overall: dict[str, float | None]


@dataclasses.dataclass(frozen=True)
class Committed:
  """A committed layer (a ``"committed"`` row) and its held-out score."""

  model: str
  benchmark: str
  layer: str
  value: float | None
  kind: str  # "ceiled" or "raw"
  raw: float | None
  error: float | None
  seed: int
  n_commitment: int | None
  n_scoring: int | None


@dataclasses.dataclass(frozen=True)
class TrainRun:
  """One training run's held-out scores (``launch.train``'s scores.json).

  Attributes:
    label: how the run is named on the page.
    folder: the run's workdir.
    config: the run's configuration.
    steps: (n_records,) scored steps.
    scores: (benchmark, layer) -> {"raw", "raw_low", "raw_high"[, "ceiled"]}
      -> (n_records,) values (NaN where a record lacks one).
    ceilings: benchmark -> the ceiling of the held-out images (last record).
  """

  label: str
  folder: Path
  config: dict
  steps: np.ndarray
  scores: dict[tuple[str, str], dict[str, np.ndarray]]
  ceilings: dict[str, float]


def _labels(rows: Sequence[dict]) -> dict[tuple[str, str], str]:
  """(model, params_hash) -> label, hash-qualified where a name has several."""
  hashes: dict[str, list[str]] = {}
  for row in rows:
    seen = hashes.setdefault(row["model"], [])
    if row["params_hash"] not in seen:
      seen.append(row["params_hash"])
  return {
    (model, h): model if len(hs) == 1 else f"{model} [{h[:8]}]"
    for model, hs in hashes.items()
    for h in hs
  }


def _number(value) -> float:
  return np.nan if value is None else float(value)


def profiles(rows: Sequence[dict]) -> tuple[list[Profile], list[str]]:
  """Layer profiles of the ``"all"`` and ``"commit-select"`` rows.

  Rows that share model, parameters, benchmark and protocol but differ in
  benchmark version, metric settings or seed are separate scorings; the one
  written last is kept and the others are named in the returned notes.

  Returns:
    (profiles in row order, notes).
  """
  labels = _labels(rows)
  groups: dict[tuple, dict[tuple, list[dict]]] = {}
  for row in rows:
    if row["protocol"] not in _PROFILE_PROTOCOLS:
      continue
    label = labels[row["model"], row["params_hash"]]
    variant = (row["benchmark_version"], row["metric"], row["seed"])
    group = groups.setdefault((label, row["benchmark"], row["protocol"]), {})
    group.setdefault(variant, []).append(row)
  out, notes = [], []
  for (label, benchmark, protocol), variants in groups.items():
    kept = max(variants.values(), key=lambda rs: max(r["id"] for r in rs))
    for variant, left in variants.items():
      if left is not kept:
        notes.append(
          f"{label} on {benchmark} ({protocol}): {len(left)} rows of version "
          f"{variant[0]}, seed {variant[2]}, metric {variant[1]} are left out "
          "for later rows with other settings."
        )
    kept = sorted(kept, key=lambda r: r["id"])
    details = kept[0]["details"]
    ceilings = [r["ceiling"] for r in kept if r["ceiling"] is not None]
    kind = details.get("kind", "regression")
    metric = details.get("metric", "rsa") if kind == "rsa" else "raw r"
    out.append(
      Profile(
        model=label,
        benchmark=benchmark,
        protocol=protocol,
        layers=tuple(r["layer"] for r in kept),
        raw=np.array([_number(r["raw"]) for r in kept]),
        error=np.array([_number(r["error"]) for r in kept]),
        ceiled=np.array([_number(r["ceiled"]) for r in kept]),
        ceiling=float(np.mean(ceilings)) if ceilings else None,
        kind=kind,
        metric=metric,
      )
    )
  return out, notes


def leaderboard(all_profiles: Sequence[Profile]) -> Leaderboard:
  """The model x benchmark table of the ``"all"`` profiles."""
  chosen = [p for p in all_profiles if p.protocol == "all"]
  cells = {}
  for p in chosen:
    best = p.best()
    if best is not None:
      kind = "raw" if p.ceiling is None else "ceiled"
      cells[p.model, p.benchmark] = Cell(
        float(p.selection()[best]), kind, p.layers[best]
      )
  names = sorted({p.benchmark for p in chosen})
  order = [r for _, r in REGIONS]
  rank = {r: order.index(r) for r in order} | {OTHER: len(order)}
  benchmarks = tuple(sorted(names, key=lambda b: (rank[region_of(b)], b)))
  regions = tuple(r for r in dict.fromkeys(map(region_of, benchmarks)) if r != OTHER)
  models = list(dict.fromkeys(p.model for p in chosen))
  region_scores, overall = {}, {}
  for model in models:
    for region in regions:
      members = [b for b in benchmarks if region_of(b) == region]
      values = [cells[model, b].value for b in members if (model, b) in cells]
      complete = len(values) == len(members)
      region_scores[model, region] = float(np.mean(values)) if complete else None
    means = [region_scores[model, r] for r in regions]
    complete = bool(means) and None not in means
    overall[model] = float(np.mean(means)) if complete else None
  models.sort(key=lambda m: (overall[m] is None, -(overall[m] or 0.0), m))
  return Leaderboard(tuple(models), benchmarks, regions, cells, region_scores, overall)


def committed(rows: Sequence[dict]) -> list[Committed]:
  """The ``"committed"`` rows, in the order they were written."""
  labels = _labels(rows)
  out = []
  for row in sorted(rows, key=lambda r: r["id"]):
    if row["protocol"] != "committed":
      continue
    details = row["details"]
    ceiled = row["ceiling"] is not None
    out.append(
      Committed(
        model=labels[row["model"], row["params_hash"]],
        benchmark=row["benchmark"],
        layer=details.get("committed_layer", row["layer"]),
        value=row["ceiled"] if ceiled else row["raw"],
        kind="ceiled" if ceiled else "raw",
        raw=row["raw"],
        error=row["error"],
        seed=row["seed"],
        n_commitment=details.get("commitment_stimuli"),
        n_scoring=details.get("scoring_stimuli"),
      )
    )
  return out


def load_train_runs(folders: Sequence[str | Path]) -> list[TrainRun]:
  """Reads ``<folder>/scores.json`` of each training run (``launch.train``)."""
  runs = []
  names = [Path(f).name for f in folders]
  for folder, name in zip(folders, names, strict=True):
    folder = Path(folder)
    path = folder / "scores.json"
    if not path.is_file():
      raise ValueError(
        f"train_runs must name folders holding a scores.json written by "
        f"launch.train; {str(folder)!r} has none."
      )
    try:
      log = json.loads(path.read_text())
    except json.JSONDecodeError as e:
      raise ValueError(f"train_runs: {str(path)!r} is not valid JSON ({e}).") from e
    records = log.get("records") if isinstance(log, dict) else None
    if not records or not all("step" in r for r in records):
      raise ValueError(
        f"train_runs: {str(path)!r} must hold a non-empty 'records' list of "
        f"dicts with a 'step', got {str(log)[:80]!r}."
      )
    config = log.get("config", {})
    label = name if names.count(name) == 1 else str(folder)
    if "align_weight" in config:
      label += f" (align_weight={config['align_weight']:g})"
    runs.append(
      TrainRun(
        label=label,
        folder=folder,
        config=config,
        steps=np.array([r["step"] for r in records]),
        scores=_train_scores(records),
        ceilings={
          name.split("/")[1]: float(value)
          for name, value in records[-1].items()
          if re.fullmatch(r"score/[^/]+/ceiling", name) and value is not None
        },
      )
    )
  return runs


def _train_scores(records: list[dict]) -> dict[tuple[str, str], dict]:
  keys: dict[tuple[str, str], set[str]] = {}
  for record in records:
    for name in record:
      parts = name.split("/")
      if parts[0] == "score" and len(parts) >= 4:
        keys.setdefault((parts[1], "/".join(parts[2:-1])), set()).add(parts[-1])
  out = {}
  for (benchmark, layer), stats in keys.items():
    prefix = f"score/{benchmark}/{layer}"
    out[benchmark, layer] = {
      stat: np.array([_number(r.get(f"{prefix}/{stat}")) for r in records])
      for stat in sorted(stats)
    }
  return out
