r"""Sweeps models x benchmarks x layers into the results store, resumably.

  python -m launch.sweep --models=tiny_cnn,efficientnet_lite0 \
    --benchmarks=cowley2023.V4-pls,kriegeskorte2008.hIT-rsa

Every (model, benchmark, layer) row the store already holds under the same
key (model parameters hash, benchmark version, metric settings, protocol,
seed) is skipped; everything else is computed, activations coming from the
activation cache when present, and written as soon as it is scored. Rerun a
killed sweep with the same flags and it carries on where it stopped.

``--commit_layers`` scores regression benchmarks by layer commitment on
disjoint halves of the stimuli (``jaxscore.commitment``) instead of every
layer on all stimuli; RDM benchmarks are scored as usual.

``--ray_address=HOST:PORT`` hands each (model, benchmark) pair with missing
rows to a Ray cluster as one task; the tasks send their rows back and this
process writes them to the store (``jaxscore.distributed``); without it
everything runs in this process.
"""

from __future__ import annotations

import resource
import time

import jax
import tqdm
from absl import app, flags, logging

import benchmarks
import models
from jaxscore import cache as cache_lib
from jaxscore import distributed, scoring, sweep
from jaxscore import store as store_lib
from jaxscore.benchmark import NeuralBenchmark
from launch import common

_MODELS = flags.DEFINE_list("models", None, "Model names (see models.MODELS).")
_BENCHMARKS = flags.DEFINE_list(
  "benchmarks", None, "Benchmark names (see benchmarks.BENCHMARKS)."
)
_CACHE_DIR = flags.DEFINE_string(
  "cache_dir", None, "Activation cache (default $JAXSCORE_CACHE/activations)."
)
_COMMIT = flags.DEFINE_bool(
  "commit_layers", False, "Commit a layer on half the stimuli, score on the rest."
)
_RAY_ADDRESS = flags.DEFINE_string(
  "ray_address",
  None,
  "Ray cluster (host:port of its head) to run each model x benchmark pair on as "
  "a task; default: everything in this process.",
)


def main(argv):
  del argv
  start = time.perf_counter()
  for flag in (_MODELS, _BENCHMARKS):
    if not flag.value:
      raise app.UsageError(f"--{flag.name} is required (a comma-separated list).")
  if _RAY_ADDRESS.value is not None:
    try:
      distributed.require_ray()
    except ImportError as e:
      raise app.UsageError(f"--ray_address: {e}") from e
  try:
    scoring.resolve_dtype(common.DTYPE.value)
    for name in _MODELS.value:
      if name not in models.MODELS:
        models.load_model(name)  # raises, listing the valid names
    loaded = [benchmarks.load_benchmark(name) for name in _BENCHMARKS.value]
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  try:
    store = store_lib.Store(common.STORE.value)
  except ValueError as e:
    raise app.UsageError(f"--store: {e}") from e
  cache = cache_lib.ActivationCache(_CACHE_DIR.value)
  # First pass: what is missing, so that the bar's total (and time left) is
  # the work still to do. Models are rebuilt in the second pass rather than
  # all held at once.
  todo = []
  for name in _MODELS.value:
    model = _load(name)
    pairs = _pairs(name, model, loaded)
    todo.append((name, [(p, len(p.missing(store))) for p in pairs]))
    del model
  total = sum(n for _, pairs in todo for _, n in pairs)
  logging.info("%d rows to compute, store %s", total, common.STORE.value)
  bar = tqdm.tqdm(total=total, unit="row", desc="sweep")
  if _RAY_ADDRESS.value is None:
    written = _run_here(todo, store, cache, bar)
  else:
    written = _run_on_ray(todo, store, cache, bar)
  bar.close()
  store.close()
  wall = time.perf_counter() - start
  # Linux reports the peak resident set size of this process in KiB.
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
  print(
    f"{written} rows written to {common.STORE.value} in {wall:.1f} s; "
    f"peak resident memory {peak:.2f} GiB"
  )


def _run_here(todo, store, cache, bar) -> int:
  written = 0
  for name, pairs in todo:
    if not any(n for _, n in pairs):
      continue
    model = _load(name)
    for pair, n in pairs:
      if not n:
        continue
      bar.set_postfix_str(f"{name} on {pair.benchmark_id}")

      def on_row(layer, added, pair=pair, name=name):
        bar.update(1)
        logging.info("%s %s %s: %s", name, pair.benchmark_id, layer, added)

      written += sweep.run_pair(
        pair,
        model,
        store=store,
        cache=cache,
        batch_size=common.BATCH_SIZE.value,
        on_row=on_row,
      )
  return written


def _run_on_ray(todo, store, cache, bar) -> int:
  tasks, n_missing = [], {}
  for _, pairs in todo:
    for pair, n in pairs:
      if n:
        task = distributed.Task.from_pair(
          pair, model_seed=common.SEED.value, store=store
        )
        tasks.append(task)
        n_missing[task] = n

  def on_done(task, added):
    bar.update(n_missing[task])
    logging.info("%s: %d rows written", task.describe(), added)

  return distributed.run_pairs(
    tasks,
    address=_RAY_ADDRESS.value,
    store=store,
    cache_root=cache.root,
    build_model=models.load_model,
    build_benchmark=benchmarks.load_benchmark,
    batch_size=common.BATCH_SIZE.value,
    on_done=on_done,
  )


def _load(name: str):
  return models.load_model(name, key=jax.random.key(common.SEED.value))


def _pairs(name: str, model, loaded) -> list[sweep.Pair]:
  try:
    layers = sweep.check_layers(model, common.LAYERS.value)
  except ValueError as e:
    raise app.UsageError(f"--{e}") from e
  params_hash = store_lib.params_hash(model.variables)
  return [
    sweep.Pair(
      model_name=name,
      params_hash=params_hash,
      benchmark=benchmark,
      layers=layers,
      commit=_COMMIT.value and isinstance(benchmark, NeuralBenchmark),
      seed=common.SEED.value,
      dtype=common.DTYPE.value,
    )
    for benchmark in loaded
  ]


if __name__ == "__main__":
  flags.mark_flags_as_required(["models", "benchmarks"])
  app.run(main)
