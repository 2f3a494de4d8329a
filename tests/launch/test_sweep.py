"""The sweep entry point: resuming after a kill, and layer commitment."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from absl import flags

import benchmarks
import models
from jaxscore import cache as cache_lib
from jaxscore import commitment
from jaxscore import store as store_lib
from launch import sweep

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = "cowley2023.V4-pls,kriegeskorte2008.hIT-rsa"
N_LAYERS = 4  # tiny_cnn


def _rows(path):
  db = sqlite3.connect(path)
  try:
    return db.execute(
      "SELECT id, created, model, benchmark, layer, protocol, raw FROM scores "
      "ORDER BY id"
    ).fetchall()
  except sqlite3.OperationalError:  # the table does not exist yet
    return []
  finally:
    db.close()


def _command(tmp_path):
  return [
    sys.executable,
    "-m",
    "launch.sweep",
    "--models=tiny_cnn",
    f"--benchmarks={BENCHMARKS}",
    f"--store={tmp_path / 'store.sqlite'}",
    f"--cache_dir={tmp_path / 'cache'}",
  ]


@pytest.mark.slow
def test_a_killed_sweep_resumes_without_recomputing(tmp_path):
  store = tmp_path / "store.sqlite"
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  process = subprocess.Popen(
    _command(tmp_path),
    cwd=ROOT,
    env=env,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
  )
  deadline = time.monotonic() + 120
  while not (store.exists() and _rows(store)):
    assert process.poll() is None, "the sweep ended before writing a row"
    assert time.monotonic() < deadline
    time.sleep(0.05)
  process.send_signal(signal.SIGKILL)
  process.wait()
  before = _rows(store)
  n_rows = 2 * N_LAYERS
  assert 1 <= len(before) < n_rows  # killed part-way

  done = subprocess.run(
    _command(tmp_path), cwd=ROOT, env=env, capture_output=True, text=True, check=True
  )
  after = _rows(store)
  assert after[: len(before)] == before  # same ids, timestamps and values
  assert len(after) == n_rows
  assert {(r[3], r[4]) for r in after} == {
    (b, layer)
    for b in BENCHMARKS.split(",")
    for layer in ("conv1", "conv2", "conv3", "pool")
  }
  assert f"{n_rows - len(before)} rows written" in done.stdout

  again = subprocess.run(
    _command(tmp_path), cwd=ROOT, env=env, capture_output=True, text=True, check=True
  )
  assert "0 rows written" in again.stdout
  assert _rows(store) == after
  # one finished cache entry per stimulus set
  entries = [p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")]
  assert len(entries) == 2


@pytest.fixture
def run_main(tmp_path):
  def run(**values):
    argv = ["sweep"] + [f"--{k}={v}" for k, v in values.items()]
    argv += [f"--store={tmp_path / 's.sqlite'}", f"--cache_dir={tmp_path / 'c'}"]
    flags.FLAGS.unparse_flags()
    flags.FLAGS(argv)
    sweep.main([])
    return store_lib.Store(tmp_path / "s.sqlite")

  yield run
  flags.FLAGS.unparse_flags()


@pytest.mark.slow
def test_commit_layers_chooses_on_one_half_and_scores_on_the_other(run_main, capsys):
  layers = ("conv3", "pool")
  store = run_main(
    models="tiny_cnn",
    benchmarks="cowley2023.V4-pls",
    layers=",".join(layers),
    commit_layers=True,
  )
  assert "3 rows written" in capsys.readouterr().out
  select = store.rows(protocol="commit-select")
  (committed,) = store.rows(protocol="committed")
  assert {r["layer"] for r in select} == set(layers)
  best = max(select, key=lambda r: r["ceiled"])["layer"]
  assert committed["layer"] == best
  details = committed["details"]
  assert details["committed_layer"] == best
  assert details["commitment_stimuli"] == details["scoring_stimuli"] == 320
  assert details["partition_seed"] == 0

  # the same numbers as jaxscore.commitment on in-memory features
  benchmark = benchmarks.load_benchmark("cowley2023.V4-pls")
  model = models.load_model("tiny_cnn", key=jax.random.key(0))
  features = {
    layer: np.asarray(
      cache_lib.ActivationCache(store.path.parent / "c").load(key, layer)
    )
    for key in [p.name for p in (store.path.parent / "c").iterdir()]
    for layer in layers
  }
  result = commitment.commit(
    benchmark, features, stimulus_ids=benchmark.stimulus_ids, seed=0
  )
  assert result.layer == best
  assert committed["raw"] == pytest.approx(result.score.layers[0].raw.center)
  assert model.layers[-1] == "pool"
  store.close()
