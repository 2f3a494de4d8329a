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
"""

from __future__ import annotations

import time

import jax
import tqdm
from absl import app, flags, logging

import benchmarks
import models
from jaxscore import cache as cache_lib
from jaxscore import scoring, sweep
from jaxscore import store as store_lib
from jaxscore.benchmark import NeuralBenchmark
from launch import common

_MODELS = flags.DEFINE_list("models", None, "Model names (see models.MODELS).")
_BENCHMARKS = flags.DEFINE_list(
  "benchmarks", None, "Benchmark names (see benchmarks.BENCHMARKS)."
)
_STORE = flags.DEFINE_string("store", "results/jaxscore.sqlite", "SQLite store.")
_CACHE_DIR = flags.DEFINE_string(
  "cache_dir", None, "Activation cache (default $JAXSCORE_CACHE/activations)."
)
_COMMIT = flags.DEFINE_bool(
  "commit_layers", False, "Commit a layer on half the stimuli, score on the rest."
)


def main(argv):
  del argv
  start = time.perf_counter()
  for flag in (_MODELS, _BENCHMARKS):
    if not flag.value:
      raise app.UsageError(f"--{flag.name} is required (a comma-separated list).")
  try:
    scoring.resolve_dtype(common.DTYPE.value)
    for name in _MODELS.value:
      if name not in models.MODELS:
        models.load_model(name)  # raises, listing the valid names
    loaded = [benchmarks.load_benchmark(name) for name in _BENCHMARKS.value]
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  store = store_lib.Store(_STORE.value)
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
  logging.info("%d rows to compute, store %s", total, _STORE.value)
  bar = tqdm.tqdm(total=total, unit="row", desc="sweep")
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
  bar.close()
  store.close()
  wall = time.perf_counter() - start
  print(f"{written} rows written to {_STORE.value} in {wall:.1f} s")


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
