"""A results store: one SQLite row per scored layer, written as it is computed.

A row's key is everything that changes the number: the model's name and the
hash of its parameters (``params_hash``), the benchmark and its version, the
layer, the metric settings (regression kind, components or penalties,
normalisation, split settings; for RDM benchmarks the comparison), the
protocol (``"all"``: the benchmark's own splits over all its stimuli;
``"commit-select"`` and ``"committed"``: layer commitment, see
``jaxscore.commitment``) and the seed. The row holds the raw score, its error,
the ceiling, the ceiled score, the layer's width and a JSON ``details`` blob
(per-split values, notes, whatever a benchmark reports beyond those columns).

Each write is one transaction; the database runs in WAL mode with a busy
timeout, so several processes on one machine may write to one file. A key
already present is never overwritten: ``add`` reports that nothing was
written, which is what lets a sweep resume without recomputing.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxscore import results

SCHEMA_VERSION = 1
KEY_COLUMNS = (
  "model",
  "params_hash",
  "benchmark",
  "benchmark_version",
  "layer",
  "metric",
  "protocol",
  "seed",
)
VALUE_COLUMNS = (
  "raw",
  "error",
  "ceiling",
  "ceiled",
  "n_features",
  "details",
  "created",
)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS scores (
  id INTEGER PRIMARY KEY,
  model TEXT NOT NULL,
  params_hash TEXT NOT NULL,
  benchmark TEXT NOT NULL,
  benchmark_version INTEGER NOT NULL,
  layer TEXT NOT NULL,
  metric TEXT NOT NULL,
  protocol TEXT NOT NULL,
  seed INTEGER NOT NULL,
  raw REAL,
  error REAL,
  ceiling REAL,
  ceiled REAL,
  n_features INTEGER,
  details TEXT NOT NULL,
  created TEXT NOT NULL,
  UNIQUE (model, params_hash, benchmark, benchmark_version, layer, metric,
          protocol, seed)
);
CREATE INDEX IF NOT EXISTS scores_by_model ON scores (model, benchmark);
CREATE INDEX IF NOT EXISTS scores_by_benchmark ON scores (benchmark, model);
"""
PROTOCOLS = ("all", "commit-select", "committed")


def params_hash(variables: Any) -> str:
  """A stable sha256 over a parameter pytree: every leaf's path, dtype, shape
  and bytes, in the pytree's (sorted-key) order. Equal hashes mean equal
  weights; any change to a value, a dtype or the tree's layout changes it."""
  digest = hashlib.sha256()
  leaves, _ = jax.tree_util.tree_flatten_with_path(variables)
  for path, leaf in leaves:
    value = np.ascontiguousarray(np.asarray(leaf))
    for part in (jax.tree_util.keystr(path), value.dtype.str, str(value.shape)):
      digest.update(part.encode())
      digest.update(b"\0")
    digest.update(value.tobytes())
  return digest.hexdigest()


def metric_settings(settings: dict[str, Any]) -> str:
  """Canonical JSON of metric settings (sorted keys, floats as repr)."""
  return json.dumps(settings, sort_keys=True, separators=(",", ":"))


@dataclasses.dataclass(frozen=True)
class Key:
  """What identifies a row (see the module docstring)."""

  model: str
  params_hash: str
  benchmark: str
  benchmark_version: int
  layer: str
  metric: str  # canonical JSON, see ``metric_settings``
  protocol: str = "all"
  seed: int = 0

  def __post_init__(self):
    if self.protocol not in PROTOCOLS:
      raise ValueError(
        f"protocol must be one of {', '.join(PROTOCOLS)}, got {self.protocol!r}."
      )
    for name in ("model", "params_hash", "benchmark", "layer", "metric"):
      value = getattr(self, name)
      if not isinstance(value, str) or not value:
        raise ValueError(f"Key.{name} must be a non-empty string, got {value!r}.")

  def values(self) -> tuple:
    return tuple(getattr(self, c) for c in KEY_COLUMNS)


class Store:
  """The SQLite store at ``path`` (created with its folder if missing)."""

  def __init__(self, path: str | Path, *, timeout: float = 60.0):
    self.path = Path(path)
    try:
      self.path.parent.mkdir(parents=True, exist_ok=True)
      self._db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
      self._db.row_factory = sqlite3.Row
      self._db.execute("PRAGMA journal_mode=WAL")
      self._db.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
      with self._transaction():
        for statement in _SCHEMA.split(";"):
          if statement.strip():
            self._db.execute(statement)
        self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    except (OSError, sqlite3.DatabaseError) as e:
      raise ValueError(
        f"path must be a jaxscore SQLite store or a new file in a folder that "
        f"can be created, got {str(path)!r} ({e})."
      ) from e

  def close(self) -> None:
    self._db.close()

  def __enter__(self) -> Store:
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def _transaction(self):
    return _Transaction(self._db)

  def has(self, key: Key) -> bool:
    """Whether a row with ``key`` exists."""
    where = " AND ".join(f"{c} = ?" for c in KEY_COLUMNS)
    row = self._db.execute(f"SELECT 1 FROM scores WHERE {where}", key.values())
    return row.fetchone() is not None

  def get(self, key: Key) -> dict | None:
    """The row with ``key`` as a dict (``details`` parsed), or None."""
    where = " AND ".join(f"{c} = ?" for c in KEY_COLUMNS)
    cursor = self._db.execute(
      f"SELECT rowid, * FROM scores WHERE {where}", key.values()
    )
    row = cursor.fetchone()
    return None if row is None else _as_dict(row)

  def add(
    self,
    key: Key,
    *,
    raw: float,
    error: float | None,
    ceiling: float | None,
    ceiled: float | None,
    n_features: int | None,
    details: dict[str, Any],
  ) -> bool:
    """Writes one row in its own transaction; False if ``key`` was present.

    ``details`` must be JSON-serialisable (NumPy arrays and scalars are
    converted); non-finite floats become null.
    """
    text = json.dumps(results.jsonable(details), allow_nan=False)
    created = datetime.datetime.now(datetime.UTC).isoformat(timespec="microseconds")
    values = (
      *key.values(),
      _real(raw),
      _real(error),
      _real(ceiling),
      _real(ceiled),
      None if n_features is None else int(n_features),
      text,
      created,
    )
    columns = KEY_COLUMNS + VALUE_COLUMNS
    with self._transaction():
      cursor = self._db.execute(
        f"INSERT INTO scores ({', '.join(columns)}) VALUES "
        f"({', '.join('?' * len(columns))}) ON CONFLICT DO NOTHING",
        values,
      )
    return cursor.rowcount == 1

  def add_row(self, row: dict) -> bool:
    """``add`` of a row as ``find`` or ``rows`` return it (from another store);
    False if its key was present."""
    key = Key(**{c: row[c] for c in KEY_COLUMNS})
    values = {c: row[c] for c in VALUE_COLUMNS if c != "created"}
    return self.add(key, **values)

  def rows(
    self,
    *,
    model: str | None = None,
    benchmark: str | None = None,
    protocol: str | None = None,
  ) -> list[dict]:
    """Rows matching every given filter, ordered by benchmark, model, rowid."""
    filters = {"model": model, "benchmark": benchmark, "protocol": protocol}
    chosen = {k: v for k, v in filters.items() if v is not None}
    where = " AND ".join(f"{k} = ?" for k in chosen) or "1"
    cursor = self._db.execute(
      f"SELECT rowid, * FROM scores WHERE {where} ORDER BY benchmark, model, rowid",
      tuple(chosen.values()),
    )
    return [_as_dict(row) for row in cursor]

  def find(self, **columns) -> list[dict]:
    """Rows whose key columns equal ``columns`` (any subset of ``KEY_COLUMNS``)."""
    unknown = sorted(set(columns) - set(KEY_COLUMNS))
    if unknown:
      raise ValueError(
        f"find takes key columns ({', '.join(KEY_COLUMNS)}), got {unknown}."
      )
    where = " AND ".join(f"{k} = ?" for k in columns) or "1"
    cursor = self._db.execute(
      f"SELECT rowid, * FROM scores WHERE {where} ORDER BY rowid",
      tuple(columns.values()),
    )
    return [_as_dict(row) for row in cursor]

  def table(self, **filters) -> list[dict]:
    """A tidy table for a report: one flat dict per row with the key columns,
    the values, and ``metric`` expanded into its settings."""
    out = []
    for row in self.rows(**filters):
      flat = {k: v for k, v in row.items() if k not in ("details", "metric")}
      flat.update(json.loads(row["metric"]))
      out.append(flat)
    return out


class _Transaction:
  """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on error (autocommit connection)."""

  def __init__(self, db: sqlite3.Connection):
    self._db = db

  def __enter__(self):
    self._db.execute("BEGIN IMMEDIATE")

  def __exit__(self, kind, value, traceback):
    self._db.execute("ROLLBACK" if kind is not None else "COMMIT")


def _as_dict(row: sqlite3.Row) -> dict:
  out = dict(row)
  out["details"] = json.loads(out["details"])
  return out


def _real(value) -> float | None:
  if value is None:
    return None
  value = float(value)
  return value if np.isfinite(value) else None
