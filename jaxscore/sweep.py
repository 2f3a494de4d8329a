"""One model on one benchmark, layer by layer, into the results store.

``run_pair`` is the unit of a sweep: it works out which rows of the store the
pair still lacks, makes sure the model's activations on the benchmark's
stimuli are in the activation cache (streamed there batch by batch when they
are not), then scores the missing layers one at a time, each read back from
its own memory-mapped file, writing each row as soon as it is computed. A
killed run, rerun, recomputes nothing that reached the store.

Protocols: ``"all"`` scores every layer with the benchmark's own splits;
with ``commit=True`` (regression benchmarks only) every layer is scored on
the commitment half (``"commit-select"`` rows) and the best one on the
scoring half (one ``"committed"`` row), see ``jaxscore.commitment``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import jax.numpy as jnp
import numpy as np

from jaxscore import cache as cache_lib
from jaxscore import commitment, scoring
from jaxscore import store as store_lib
from jaxscore.benchmark import BenchmarkScore, NeuralBenchmark
from jaxscore.model import VisionModel
from jaxscore.rsa_benchmark import RSABenchmark, RSABenchmarkScore


def metric_settings(benchmark: NeuralBenchmark | RSABenchmark, dtype) -> str:
  """Canonical JSON of what, besides data and model, sets a row's numbers."""
  dtype = jnp.dtype(dtype).name
  if isinstance(benchmark, NeuralBenchmark):
    regression = benchmark.regression
    settings = {
      "regression": regression.kind,
      "normalization": benchmark.normalization,
      "n_splits": benchmark.n_splits,
      "train_size": benchmark.train_size,
      "stratify_by": benchmark.stratify_by,
      "dtype": dtype,
    }
    if regression.kind == "pls":
      settings["n_components"] = regression.n_components
    else:
      settings["alphas"] = list(regression.alphas)
      settings["selection"] = regression.selection
  elif isinstance(benchmark, RSABenchmark):
    settings = {
      "metric": benchmark.metric_name,
      "rdm_metric": benchmark.rdm_metric,
      "ceiling_bound": benchmark.ceiling_bound,
      "jackknife": benchmark.jackknife,
      "dtype": dtype,
    }
  else:
    raise TypeError(
      "benchmark must be a NeuralBenchmark or an RSABenchmark, got "
      f"{type(benchmark).__name__}."
    )
  return store_lib.metric_settings(settings)


@dataclasses.dataclass(frozen=True)
class Pair:
  """A model (by name and parameters hash) on a benchmark, with its settings."""

  model_name: str
  params_hash: str
  benchmark: NeuralBenchmark | RSABenchmark
  layers: tuple[str, ...]
  commit: bool = False
  seed: int = 0  # commitment seed; "all" rows use the benchmark's own seed
  dtype: str = "float32"

  def __post_init__(self):
    if self.commit and not isinstance(self.benchmark, NeuralBenchmark):
      raise ValueError(
        f"Layer commitment needs cross-validation splits; {self.benchmark_id} "
        "is an RDM benchmark. Run it without commit."
      )

  @property
  def benchmark_id(self) -> str:
    return self.benchmark.identifier

  @property
  def protocol(self) -> str:
    return "commit-select" if self.commit else "all"

  def key(self, layer: str, protocol: str | None = None) -> store_lib.Key:
    protocol = protocol or self.protocol
    seed = self.seed if protocol != "all" else getattr(self.benchmark, "seed", 0)
    return store_lib.Key(
      model=self.model_name,
      params_hash=self.params_hash,
      benchmark=self.benchmark_id,
      benchmark_version=self.benchmark.version,
      layer=layer,
      metric=metric_settings(self.benchmark, self.dtype),
      protocol=protocol,
      seed=seed,
    )

  def stored_rows(self, store: store_lib.Store) -> list[dict]:
    """This pair's rows in ``store``, in the order they were written."""
    rows = [store.get(self.key(layer)) for layer in self.layers]
    rows = [row for row in rows if row is not None]
    if self.commit:
      rows += self.committed_rows(store)
    return sorted(rows, key=lambda row: row["id"])

  def committed_rows(self, store: store_lib.Store) -> list[dict]:
    key = dataclasses.asdict(self.key("-", "committed"))
    del key["layer"]
    return store.find(**key)

  def missing(self, store: store_lib.Store) -> list[str]:
    """Layers (and ``"<committed>"``) whose rows the store lacks."""
    out = [layer for layer in self.layers if not store.has(self.key(layer))]
    if self.commit and not self.committed_rows(store):
      out.append(COMMITTED)
    return out

  def n_rows(self) -> int:
    return len(self.layers) + int(self.commit)


COMMITTED = "<committed>"


def run_pair(
  pair: Pair,
  model: VisionModel,
  *,
  store: store_lib.Store,
  cache: cache_lib.ActivationCache,
  batch_size: int = 32,
  on_row: Callable[[str, bool], None] | None = None,
  progress: Callable[[int], None] | None = None,
) -> int:
  """Scores what ``store`` lacks of ``pair``; returns the rows written.

  Args:
    pair: the model, benchmark and settings.
    model: the model ``pair`` names (its parameters must hash to
      ``pair.params_hash``; not rechecked here).
    store: where rows go.
    cache: where activations are found or streamed to.
    batch_size: images per forward pass.
    on_row: ``on_row(layer, written)`` after each row (``written`` False when
      another writer had stored it first).
    progress: images done, while activations are computed.
  """
  missing = pair.missing(store)
  if not missing:
    return 0
  benchmark = pair.benchmark
  stimuli = benchmark.stimuli.subset(benchmark.stimulus_ids)
  key = cache_lib.model_key(
    model,
    params_hash=pair.params_hash,
    source_degrees=benchmark.visual_degrees,
    stimulus_ids=benchmark.stimulus_ids,
    images_hash=stimuli.content_hash(),
    layers=pair.layers,
  )
  cache_lib.cached_activations(
    cache,
    model,
    stimuli.images,
    key=key,
    source_degrees=benchmark.visual_degrees,
    layers=pair.layers,
    batch_size=batch_size,
    progress=progress,
  )
  written = 0
  splits = None
  if pair.commit:
    halves = commitment.benchmark_partition(benchmark, seed=pair.seed)
    splits = commitment.half_splits(benchmark, halves.commitment, seed=pair.seed)
  for layer in pair.layers:
    if layer not in missing:
      continue
    score = _score_layer(pair, cache.load(key, layer), layer, splits)
    added = store.add(pair.key(layer), **_row(score, pair))
    written += added
    if on_row is not None:
      on_row(layer, added)
  if COMMITTED in missing:
    chosen = _choose(pair, store)
    scoring_splits = commitment.half_splits(benchmark, halves.scoring, seed=pair.seed)
    score = _score_layer(pair, cache.load(key, chosen), chosen, scoring_splits)
    row = _row(score, pair)
    row["details"].update(
      committed_layer=chosen,
      commitment_stimuli=len(halves.commitment),
      scoring_stimuli=len(halves.scoring),
      partition_seed=pair.seed,
      stratified_by=benchmark.stratify_by,
    )
    added = store.add(pair.key(chosen, "committed"), **row)
    written += added
    if on_row is not None:
      on_row(COMMITTED, added)
  return written


def _score_layer(pair: Pair, features: np.ndarray, layer: str, splits):
  benchmark = pair.benchmark
  kwargs = {} if splits is None else {"splits": splits}
  return benchmark.score_features(
    {layer: features},
    stimulus_ids=benchmark.stimulus_ids,
    dtype=scoring.resolve_dtype(pair.dtype),
    **kwargs,
  )


def _choose(pair: Pair, store: store_lib.Store) -> str:
  """The layer with the best commitment-half score in the store."""
  values = {}
  for layer in pair.layers:
    row = store.get(pair.key(layer, "commit-select"))
    values[layer] = row["raw"]  # as commitment.selection_value
  return max(pair.layers, key=lambda layer: values[layer])


def _row(score: BenchmarkScore | RSABenchmarkScore, pair: Pair) -> dict:
  """Store columns and details of a one-layer score."""
  (layer,) = score.layers
  notes = [n for n in score.notes if "layer " not in n or repr(layer.layer) in n]
  if isinstance(score, RSABenchmarkScore):
    ceiling = score.ceiling
    return dict(
      raw=layer.raw,
      error=layer.error,
      ceiling=None if ceiling is None else ceiling.center,
      ceiled=layer.ceiled,
      n_features=layer.n_features,
      details={
        "kind": "rsa",
        "metric": score.metric,
        "per_subject": layer.per_subject,
        "subjects": score.subjects,
        "group": layer.group,
        "ceiling_lower": None if ceiling is None else ceiling.lower,
        "ceiling_upper": None if ceiling is None else ceiling.upper,
        "ceiling_bound": None if ceiling is None else ceiling.bound,
        "n_stimuli": pair.benchmark.n_stimuli,
        "notes": notes,
      },
    )
  ceiling = score.ceiling
  details = {
    "kind": "regression",
    "per_split": layer.raw.per_split,
    "n_components": layer.n_components,
    "n_neuroids": len(score.neuroid_ids),
    "n_splits": int(score.splits.train.shape[0]),
    "n_train": int(score.splits.train.shape[1]),
    "n_test": int(score.splits.test.shape[1]),
    "ceiling_error": None if ceiling is None else ceiling.summary.error,
    "ceiling_per_split": None if ceiling is None else ceiling.summary.per_split,
    "notes": notes,
  }
  if layer.alpha is not None:
    details["alpha_median"] = float(np.median(layer.alpha))
  return dict(
    raw=layer.raw.center,
    error=layer.raw.error,
    ceiling=None if ceiling is None else ceiling.summary.center,
    ceiled=layer.ceiled,
    n_features=layer.n_features,
    details=details,
  )


def check_layers(model: VisionModel, layers: Sequence[str] | None) -> tuple[str, ...]:
  """``layers`` (default all of the model's), refusing names it lacks."""
  if layers is None:
    return tuple(model.layers)
  unknown = [name for name in layers if name not in model.layers]
  if unknown:
    raise ValueError(
      f"layers names {unknown}, which model {model.name!r} does not have; its "
      f"layers are {', '.join(model.layers)}."
    )
  return tuple(layers)
