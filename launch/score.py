r"""Scores a model (or precomputed features) on a benchmark.

  python -m launch.score --model=efficientnet_lite0 --benchmark=cowley2023.V4-pls

prints, per layer, the raw cross-validated r with its standard error over
splits, the ceiling, the ceiled score, marks the best layer, and writes
``<results_dir>/<benchmark>/<model>.json`` and ``.nc`` (format in
``jaxscore.results``).

With ``--features=FILE.npz`` the model is not run: the file holds one array
per layer, ``(n_stimuli, ...)``, plus a ``stimulus_id`` array of strings
naming the rows, and ``--model`` only labels the result.
"""

from __future__ import annotations

import time

import jax
import numpy as np
import tqdm
from absl import app, flags, logging

import benchmarks
import models
from jaxscore import results, scoring
from jaxscore.benchmark import BenchmarkScore, LayerScore
from jaxscore.rsa_benchmark import RSABenchmarkScore, RSALayerScore

_MODEL = flags.DEFINE_string(
  "model", None, "Model name (see models.MODELS), or a label with --features."
)
_BENCHMARK = flags.DEFINE_string(
  "benchmark", None, "Benchmark name (see benchmarks.BENCHMARKS)."
)
_FEATURES = flags.DEFINE_string(
  "features", None, "An .npz of precomputed features to score instead of a model."
)
_LAYERS = flags.DEFINE_list("layers", None, "Layers to score (default: all).")
_RESULTS_DIR = flags.DEFINE_string("results_dir", "results", "Where to write.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Images per forward pass.")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "float64"], "Compute dtype.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the model's random init, if any.")
flags.mark_flags_as_required(["model", "benchmark"])


def main(argv):
  del argv
  start = time.perf_counter()
  # Everything that can be refused is refused before any work is done.
  try:
    scoring.resolve_dtype(_DTYPE.value)
    results.check_label(_MODEL.value)
    if not _FEATURES.value and _MODEL.value not in models.MODELS:
      models.load_model(_MODEL.value)  # raises, listing the valid names
    benchmark = benchmarks.load_benchmark(_BENCHMARK.value)
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  logging.info("Loaded %s: %d stimuli.", benchmark.identifier, benchmark.n_stimuli)
  if _FEATURES.value:
    ids, features = read_features(_FEATURES.value, _LAYERS.value)
    score = benchmark.score_features(
      features, stimulus_ids=ids, dtype=_DTYPE.value, on_layer=_log_layer
    )
  else:
    model = models.load_model(_MODEL.value, key=jax.random.key(_SEED.value))
    unknown = sorted(set(_LAYERS.value or ()) - set(model.layers))
    if unknown:
      raise app.UsageError(
        f"--layers names {unknown}, which {model.name} does not have; its "
        f"layers are {', '.join(model.layers)}."
      )
    bar = tqdm.tqdm(total=benchmark.n_stimuli, desc="activations", unit="img")

    def progress(done):
      bar.update(done - bar.n)
      if done == benchmark.n_stimuli:
        bar.close()

    score = benchmark.score_model(
      model,
      layers=_LAYERS.value,
      batch_size=_BATCH_SIZE.value,
      dtype=_DTYPE.value,
      progress=progress,
      on_layer=_log_layer,
    )
  wall = time.perf_counter() - start
  path = results.write(
    score,
    model=_MODEL.value,
    directory=_RESULTS_DIR.value,
    run={"wall_seconds": round(wall, 2), "dtype": _DTYPE.value},
  )
  print(format_table(score, model=_MODEL.value))
  print(f"wall time {wall:.1f} s; results in {path}")


def read_features(path: str, layers: list[str] | None):
  """(stimulus ids, {layer: array}) from an .npz; clear errors otherwise."""
  try:
    data = np.load(path)
  except (OSError, ValueError) as e:
    raise app.UsageError(f"Cannot read --features={path}: {e}") from e
  with data:
    if "stimulus_id" not in data.files:
      raise app.UsageError(
        f"{path} has no 'stimulus_id' array naming its rows; it has "
        f"{', '.join(data.files)}."
      )
    try:
      ids = data["stimulus_id"].astype(str).tolist()
    except ValueError as e:
      raise app.UsageError(
        f"The 'stimulus_id' array of {path} could not be read ({e}); save the "
        "ids as strings, e.g. np.array(ids, dtype=str)."
      ) from e
    names = [k for k in data.files if k != "stimulus_id"]
    unknown = sorted(set(layers or ()) - set(names))
    if unknown:
      raise app.UsageError(
        f"--layers names {unknown}, which {path} does not hold; it has "
        f"{', '.join(names)}."
      )
    return ids, {k: data[k] for k in names if not layers or k in layers}


def _log_layer(layer: LayerScore | RSALayerScore) -> None:
  if isinstance(layer, RSALayerScore):
    center, error = layer.raw, layer.error
  else:
    center, error = layer.raw.center, layer.raw.error
  logging.info(
    "%s: raw %.4f ± %.4f (%d features)", layer.layer, center, error, layer.n_features
  )


def format_table(score: BenchmarkScore | RSABenchmarkScore, *, model: str) -> str:
  """A per-layer table of raw score, error and ceiled score."""
  if isinstance(score, RSABenchmarkScore):
    return format_rsa_table(score, model=model)
  lines = [f"{model} on {score.benchmark} (version {score.version})"]
  if score.ceiling is not None:
    c = score.ceiling.summary
    lines.append(
      f"ceiling {c.center:.4f} ± {c.error:.4f} (split-half, Spearman-Brown, "
      f"median over {len(score.neuroid_ids)} neuroids); ceiled = "
      f"{'r^2/c' if score.normalization == 'r2_over_c' else '(r/c)^2'}"
    )
  best = score.best.layer
  lines.append(f"{'layer':<16}{'features':>10}{'raw r':>9}{'± sem':>9}{'ceiled':>9}")
  for s in score.layers:
    ceiled = "-" if s.ceiled is None else f"{s.ceiled:.4f}"
    mark = "  <- best" if s.layer == best else ""
    lines.append(
      f"{s.layer:<16}{s.n_features:>10}{s.raw.center:>9.4f}{s.raw.error:>9.4f}"
      f"{ceiled:>9}{mark}"
    )
  lines.extend(f"note: {n}" for n in score.notes)
  return "\n".join(lines)


def format_rsa_table(score: RSABenchmarkScore, *, model: str) -> str:
  """The table of an RDM benchmark: raw similarity, jackknife error, ceiled."""
  lines = [f"{model} on {score.benchmark} (version {score.version}, {score.metric})"]
  if score.ceiling is not None:
    c = score.ceiling
    lines.append(
      f"ceiling: lower {c.lower:.4f}, upper {c.upper:.4f} (inter-subject, over "
      f"{len(score.subjects)} subjects); ceiled = raw / {c.bound} bound"
    )
  best = score.best.layer
  header = f"{'layer':<16}{'features':>10}{'raw':>9}{'± jk':>9}{'ceiled':>9}"
  lines.append(header)
  for s in score.layers:
    ceiled = "-" if s.ceiled is None else f"{s.ceiled:.4f}"
    mark = "  <- best" if s.layer == best else ""
    lines.append(
      f"{s.layer:<16}{s.n_features:>10}{s.raw:>9.4f}{s.error:>9.4f}{ceiled:>9}{mark}"
    )
  lines.extend(f"note: {n}" for n in score.notes)
  return "\n".join(lines)


if __name__ == "__main__":
  app.run(main)
