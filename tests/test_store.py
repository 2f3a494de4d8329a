import json
import sqlite3
import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxscore import store as store_lib


def _variables():
  return {
    "params": {
      "conv": {"kernel": np.arange(12, dtype=np.float32).reshape(2, 2, 3)},
      "dense": {"bias": np.zeros(4, np.float32)},
    }
  }


def _key(layer="conv1", **changes):
  fields = dict(
    model="tiny",
    params_hash="abc",
    benchmark="toy-pls",
    benchmark_version=1,
    layer=layer,
    metric=store_lib.metric_settings({"regression": "pls", "n_components": 25}),
    protocol="all",
    seed=0,
  )
  return store_lib.Key(**(fields | changes))


def _values(raw=0.5):
  return dict(
    raw=raw,
    error=0.01,
    ceiling=0.8,
    ceiled=raw**2 / 0.8,
    n_features=100,
    details={"per_split": np.array([raw, raw]), "nan": float("nan")},
  )


def test_params_hash_is_stable_and_sees_values_dtypes_shapes_and_paths():
  base = store_lib.params_hash(_variables())
  assert base == store_lib.params_hash(_variables())
  # the same values as JAX arrays hash the same
  assert base == store_lib.params_hash(jax.tree.map(jnp.asarray, _variables()))
  changed = []
  v = _variables()
  v["params"]["conv"]["kernel"][0, 0, 0] = 0.5
  changed.append(v)
  v = _variables()
  v["params"]["dense"]["bias"] = v["params"]["dense"]["bias"].astype(np.float64)
  changed.append(v)
  v = _variables()
  v["params"]["conv"]["kernel"] = v["params"]["conv"]["kernel"].reshape(3, 2, 2)
  changed.append(v)
  v = _variables()
  v["params"]["conv2"] = v["params"].pop("conv")
  changed.append(v)
  hashes = {base} | {store_lib.params_hash(v) for v in changed}
  assert len(hashes) == 5


def test_rows_are_written_once_and_never_overwritten(tmp_path):
  with store_lib.Store(tmp_path / "s.sqlite") as store:
    key = _key()
    assert not store.has(key)
    assert store.add(key, **_values(0.5))
    first = store.get(key)
    assert not store.add(key, **_values(0.9))  # same key: kept as it was
    assert store.get(key) == first
    assert first["raw"] == 0.5 and first["ceiled"] == pytest.approx(0.25 / 0.8)
    assert first["details"] == {"per_split": [0.5, 0.5], "nan": None}
    # any key field changing makes a new row
    for change in (
      {"params_hash": "abd"},
      {"benchmark_version": 2},
      {"metric": store_lib.metric_settings({"regression": "ridge"})},
      {"protocol": "committed"},
      {"seed": 1},
      {"layer": "conv2"},
    ):
      assert store.add(_key(**change), **_values())
    assert len(store.rows()) == 7
  db = sqlite3.connect(tmp_path / "s.sqlite")
  assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_queries_and_tidy_table(tmp_path):
  with store_lib.Store(tmp_path / "s.sqlite") as store:
    store.add(_key(), **_values(0.1))
    store.add(_key(model="other"), **_values(0.2))
    store.add(_key(benchmark="rsa", layer="x"), **_values(0.3))
    assert [r["raw"] for r in store.rows(model="tiny")] == [0.3, 0.1]  # by benchmark
    assert [r["raw"] for r in store.rows(benchmark="toy-pls")] == [0.2, 0.1]
    table = store.table(model="tiny", benchmark="toy-pls")
    assert len(table) == 1
    row = table[0]
    assert row["regression"] == "pls" and row["n_components"] == 25
    assert row["layer"] == "conv1" and row["ceiling"] == 0.8
    json.dumps(table)  # plain values only
    assert len(store.find(model="tiny", benchmark="rsa")) == 1
    with pytest.raises(ValueError, match="find takes key columns"):
      store.find(raw=0.1)


def test_bad_keys_are_refused():
  with pytest.raises(ValueError, match="protocol must be one of"):
    _key(protocol="best")
  with pytest.raises(ValueError, match=r"Key\.layer must be a non-empty string"):
    _key(layer="")


def test_concurrent_writers_on_one_file(tmp_path):
  path = tmp_path / "s.sqlite"
  store_lib.Store(path).close()
  errors = []

  def write(worker):
    try:
      with store_lib.Store(path) as store:
        for i in range(25):
          store.add(_key(layer=f"w{worker}-{i}"), **_values())
          store.add(_key(layer="shared"), **_values(worker / 10))
    except Exception as e:  # a thread's error, asserted on the main thread
      errors.append(e)

  threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  assert not errors
  with store_lib.Store(path) as store:
    rows = store.rows()
  assert len(rows) == 4 * 25 + 1
  assert len({r["id"] for r in rows}) == len(rows)


def test_a_row_copies_to_another_store_whole(tmp_path):
  with (
    store_lib.Store(tmp_path / "a.sqlite") as a,
    store_lib.Store(tmp_path / "b.sqlite") as b,
  ):
    a.add(_key("conv1"), **_values(0.25))
    (row,) = a.rows()
    assert b.add_row(row)
    assert not b.add_row(row)  # present: nothing written
    (copy,) = b.rows()
    for column in (*store_lib.KEY_COLUMNS, "raw", "error", "ceiling", "ceiled"):
      assert copy[column] == row[column], column
    assert copy["details"] == row["details"]


def test_a_path_that_cannot_be_a_store_names_the_path(tmp_path):
  text = tmp_path / "notes.sqlite"
  text.write_text("not a database, " * 100)
  blocker = tmp_path / "a_file"
  blocker.write_text("")
  for bad in (text, tmp_path, blocker / "x.sqlite"):
    with pytest.raises(ValueError, match="path must be a jaxscore SQLite store"):
      store_lib.Store(bad)
