r"""Scores a model (or precomputed features) on a benchmark.

  python -m launch.score --model=efficientnet_lite0 --benchmark=cowley2023.V4-pls

prints, per layer, the raw cross-validated r with its standard error over
splits, the ceiling, the ceiled score, marks the best layer, and writes
``<results_dir>/<benchmark>/<model>.json`` and ``.nc`` (format in
``jaxscore.results``).

With ``--features=FILE.npz`` the model is not run: the file holds one array
per layer, ``(n_stimuli, ...)``, plus a ``stimulus_id`` array of strings
naming the rows, and ``--model`` only labels the result.

Your own recordings, without writing code: ``--responses=R.npy`` (neurons x
images x repeats, NaN for missing repeats, or neurons x images) with
``--images=DIR_OR_ZIP`` and optionally ``--labels=L.csv`` replaces
``--benchmark`` (exactly one of the two)::

  python -m launch.score --model=tiny_cnn --responses=R.npy --images=imgs.zip \
      --labels=labels.csv --visual_degrees=8 --metric=pls

Response column j is the j-th row of the labels CSV when one is given, else
the j-th image file name in sorted order (see ``jaxscore.data.own``).

``--bootstrap=N`` adds N-resample confidence intervals (test stimuli and
neuroids resampled; the ceiling too) to a regression benchmark's table.
``--compare=OTHER`` also scores model OTHER and tests the difference between
the two models' best layers on the same resamples (a p-value).
"""

from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np
import tqdm
from absl import app, flags, logging

import benchmarks
import models
from jaxscore import results, scoring, uncertainty
from jaxscore.benchmark import BenchmarkScore, LayerScore, NeuralBenchmark
from jaxscore.data import own
from jaxscore.rsa_benchmark import RSABenchmarkScore, RSALayerScore
from launch import common

_MODEL = flags.DEFINE_string(
  "model", None, "Model name (see models.MODELS), or a label with --features."
)
_BENCHMARK = flags.DEFINE_string(
  "benchmark", None, "Benchmark name (see benchmarks.BENCHMARKS)."
)
_FEATURES = flags.DEFINE_string(
  "features", None, "An .npz of precomputed features to score instead of a model."
)
_RESPONSES = flags.DEFINE_string(
  "responses",
  None,
  "Your own data instead of --benchmark: a .npy of (neurons, images, repeats) "
  "with NaN for missing repeats, or (neurons, images).",
)
_IMAGES = flags.DEFINE_string(
  "images",
  None,
  "With --responses: a folder or .zip of the images. Response column j is the "
  "j-th file name in sorted order, unless --labels gives the order.",
)
_LABELS = flags.DEFINE_string(
  "labels",
  None,
  "With --responses: a CSV with a filename (or stimulus_id = file name without "
  "extension) column and a label column; its rows give the image order and the "
  "labels stratify the splits.",
)
_VISUAL_DEGREES = flags.DEFINE_float(
  "visual_degrees", 8.0, "With --responses: visual angle the images spanned."
)
_METRIC = flags.DEFINE_enum(
  "metric", "pls", list(own.METRICS), "With --responses: how to compare."
)
_RESULTS_DIR = flags.DEFINE_string("results_dir", "results", "Where to write.")
_BOOTSTRAP = flags.DEFINE_integer(
  "bootstrap", 0, "Bootstrap resamples for confidence intervals (0: none)."
)
_COMPARE = flags.DEFINE_string(
  "compare", None, "A second model to compare with, on the same resamples."
)
_CHECKPOINT = flags.DEFINE_string(
  "checkpoint", None, "An orbax checkpoint folder of --model's variables."
)
_STATE_DICT = flags.DEFINE_string(
  "state_dict",
  None,
  "A PyTorch .pt/.pth state_dict of --model's reference architecture "
  "(torchvision's AlexNet, VGG, ResNet, ViT; CORnet's), read without torch.",
)
_COORDINATOR = flags.DEFINE_string(
  "coordinator_address",
  None,
  "Multi-host: host:port of process 0; every process runs this same command "
  "with its own --process_id and they share the bootstrap resamples.",
)
_NUM_PROCESSES = flags.DEFINE_integer(
  "num_processes", None, "Multi-host: how many processes take part."
)
_PROCESS_ID = flags.DEFINE_integer(
  "process_id", None, "Multi-host: this process's index, 0 to num_processes - 1."
)
_OWN_ONLY = ("images", "labels", "visual_degrees", "metric")


def main(argv):
  del argv
  start = time.perf_counter()
  # Everything that can be refused is refused before any work is done.
  if _MODEL.value is None:
    raise app.UsageError("--model is required (a name from models.MODELS).")
  start_processes()
  if common.DTYPE.value == "float64":
    jax.config.update("jax_enable_x64", True)  # before any array is made
  try:
    common.check_run_flags()
    if jax.process_index() == 0:  # the process that writes
      results.check_writable(_RESULTS_DIR.value)
    scoring.resolve_dtype(common.DTYPE.value)
    results.check_label(_MODEL.value)
    for name in (None if _FEATURES.value else _MODEL.value, _COMPARE.value):
      if name is not None and name not in models.MODELS:
        models.load_model(name)  # raises, listing the valid names
    if _FEATURES.value and (_CHECKPOINT.value or _STATE_DICT.value):
      raise ValueError(
        "--checkpoint and --state_dict load a model; --features has none."
      )
    if _BOOTSTRAP.value < 0 or _BOOTSTRAP.value == 1:
      raise ValueError(f"--bootstrap must be 0 or at least 2, got {_BOOTSTRAP.value}.")
    benchmark = load_benchmark_from_flags()
    if isinstance(benchmark, NeuralBenchmark):
      benchmark.ceiling  # noqa: B018 (computed now: a bad one is refused before work)
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  regression = isinstance(benchmark, NeuralBenchmark)
  if not regression and (_BOOTSTRAP.value or _COMPARE.value):
    raise app.UsageError(
      "--bootstrap and --compare apply to regression benchmarks; RDM "
      "benchmarks report a jackknife error instead."
    )
  logging.info("Loaded %s: %d stimuli.", benchmark.identifier, benchmark.n_stimuli)
  if _FEATURES.value:
    ids, features = read_features(_FEATURES.value, common.LAYERS.value)
    try:
      score = benchmark.score_features(
        features, stimulus_ids=ids, dtype=common.DTYPE.value, on_layer=_log_layer
      )
    except ValueError as e:
      raise app.UsageError(f"--features={_FEATURES.value}: {e}") from e
  else:
    score = score_model(benchmark, _MODEL.value, common.LAYERS.value)
  extra = results.Extra()
  if _BOOTSTRAP.value:
    intervals, ceiling_interval = uncertainty.bootstrap(
      benchmark, score, n_boot=_BOOTSTRAP.value
    )
    extra = results.Extra(intervals=intervals, ceiling_interval=ceiling_interval)
  comparison = None
  if _COMPARE.value:
    other = score_model(benchmark, _COMPARE.value, None, weights=False)
    comparison = uncertainty.compare(
      benchmark,
      (score, score.best.layer),
      (other, other.best.layer),
      n_boot=_BOOTSTRAP.value or 1000,
    )
    extra = dataclasses.replace(
      extra, comparison={"model": _COMPARE.value, **dataclasses.asdict(comparison)}
    )
  wall = time.perf_counter() - start
  if jax.process_index() != 0:
    return  # process 0 writes and prints; every process holds the same numbers
  path = results.write(
    score,
    model=_MODEL.value,
    directory=_RESULTS_DIR.value,
    run={"wall_seconds": round(wall, 2), "dtype": common.DTYPE.value},
    extra=extra,
  )
  print(format_table(score, model=_MODEL.value, extra=extra))
  if comparison is not None:
    print(format_comparison(comparison, _MODEL.value, _COMPARE.value))
  print(f"wall time {wall:.1f} s; results in {path}")


def start_processes() -> None:
  """Joins JAX's multi-process runtime when --coordinator_address is given.

  Each process scores the model itself (the same numbers on every host);
  the bootstrap's resamples are spread over the devices of all processes and
  gathered on each (``jaxscore.kernels.bootstrap.resample_devices``).
  """
  given = [f.name for f in (_NUM_PROCESSES, _PROCESS_ID) if f.value is not None]
  if _COORDINATOR.value is None:
    if given:
      raise app.UsageError(f"--{given[0]} needs --coordinator_address.")
    return
  if len(given) != 2:
    raise app.UsageError(
      "--coordinator_address needs --num_processes and --process_id too."
    )
  if not 0 <= _PROCESS_ID.value < _NUM_PROCESSES.value:
    raise app.UsageError(
      f"--process_id must be in [0, {_NUM_PROCESSES.value}), got {_PROCESS_ID.value}."
    )
  jax.distributed.initialize(
    _COORDINATOR.value,
    num_processes=_NUM_PROCESSES.value,
    process_id=_PROCESS_ID.value,
  )
  logging.info(
    "Process %d of %d; %d devices in all.",
    jax.process_index(),
    jax.process_count(),
    len(jax.devices()),
  )


def load_benchmark_from_flags():
  """The named benchmark of --benchmark, or one built from --responses."""
  if (_BENCHMARK.value is None) == (_RESPONSES.value is None):
    raise ValueError(
      "Pass exactly one of --benchmark (a named benchmark) and --responses "
      "(your own recordings, with --images)."
    )
  if _BENCHMARK.value is not None:
    given = [f"--{n}" for n in _OWN_ONLY if flags.FLAGS[n].present]
    if given:
      raise ValueError(f"{', '.join(given)} apply only with --responses.")
    return benchmarks.load_benchmark(_BENCHMARK.value)
  if _IMAGES.value is None:
    raise ValueError("--responses needs --images=FOLDER_OR_ZIP of the images shown.")
  return own.load_benchmark(
    _RESPONSES.value,
    _IMAGES.value,
    _LABELS.value,
    metric=_METRIC.value,
    visual_degrees=_VISUAL_DEGREES.value,
  )


def score_model(benchmark, name: str, layers: list[str] | None, *, weights=True):
  """Loads model ``name`` and scores it, with a progress bar.

  ``weights``: take --checkpoint or --state_dict, if given (the model of
  --compare always has its own weights).
  """
  files = {}
  if weights:
    files = {"checkpoint": _CHECKPOINT.value, "state_dict": _STATE_DICT.value}
  given = [f"--{k}={v}" for k, v in files.items() if v is not None]
  try:
    model = models.load_model(name, key=jax.random.key(common.SEED.value), **files)
  except (ValueError, FileNotFoundError) as e:
    raise app.UsageError(f"{' '.join([*given, f'--model={name}'])}: {e}") from e
  unknown = sorted(set(layers or ()) - set(model.layers))
  if unknown:
    raise app.UsageError(
      f"--layers names {unknown}, which {model.name} does not have; its "
      f"layers are {', '.join(model.layers)}."
    )
  bar = tqdm.tqdm(total=benchmark.n_stimuli, desc=f"{name} activations", unit="img")

  def progress(done):
    bar.update(done - bar.n)
    if done == benchmark.n_stimuli:
      bar.close()

  return benchmark.score_model(
    model,
    layers=layers,
    batch_size=common.BATCH_SIZE.value,
    dtype=common.DTYPE.value,
    progress=progress,
    on_layer=_log_layer,
  )


def format_comparison(comparison: uncertainty.Comparison, a: str, b: str) -> str:
  low, high = comparison.interval
  return (
    f"{a} ({comparison.a}) - {b} ({comparison.b}): raw r difference "
    f"{comparison.difference:+.4f}, {100 * comparison.level:.0f}% CI "
    f"[{low:+.4f}, {high:+.4f}], p = {comparison.p_value:.4g} "
    f"({comparison.n_boot} paired resamples of test stimuli and neuroids)"
  )


def read_features(path: str, layers: list[str] | None):
  """(stimulus ids, {layer: array}) from an .npz; clear errors otherwise."""
  try:
    data = np.load(path)
  except (OSError, ValueError) as e:
    raise app.UsageError(f"Cannot read --features={path}: {e}") from e
  if not isinstance(data, np.lib.npyio.NpzFile):
    raise app.UsageError(
      f"--features={path} holds one array; expected an .npz with one array per "
      "layer and a 'stimulus_id' array (np.savez(path, stimulus_id=ids, ...))."
    )
  with data:
    if "stimulus_id" not in data.files:
      raise app.UsageError(
        f"{path} has no 'stimulus_id' array naming its rows; it has "
        f"{', '.join(data.files)}."
      )
    try:
      ids = data["stimulus_id"]
      if ids.ndim != 1:
        raise ValueError(f"it has shape {ids.shape}, expected (n_stimuli,)")
      ids = ids.astype(str).tolist()
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
    features = {}
    for name in names:
      if layers and name not in layers:
        continue
      try:
        features[name] = data[name]
      except ValueError as e:  # e.g. an object array, which needs pickle
        raise app.UsageError(
          f"Layer {name!r} of --features={path} could not be read ({e}); save "
          "numeric arrays."
        ) from e
    if not features:
      raise app.UsageError(f"--features={path} holds no layer arrays.")
    return ids, features


def _log_layer(layer: LayerScore | RSALayerScore) -> None:
  if isinstance(layer, RSALayerScore):
    center, error = layer.raw, layer.error
  else:
    center, error = layer.raw.center, layer.raw.error
  logging.info(
    "%s: raw %.4f ± %.4f (%d features)", layer.layer, center, error, layer.n_features
  )


def format_table(
  score: BenchmarkScore | RSABenchmarkScore,
  *,
  model: str,
  extra: results.Extra | None = None,
) -> str:
  """A per-layer table of raw score, error, ceiled score (and intervals)."""
  if isinstance(score, RSABenchmarkScore):
    return format_rsa_table(score, model=model)
  extra = extra or results.Extra()
  lines = [f"{model} on {score.benchmark} (version {score.version})"]
  if score.ceiling is not None:
    c = score.ceiling.summary
    interval = ""
    if extra.ceiling_interval is not None:
      low, high = extra.ceiling_interval
      interval = f", CI [{low:.4f}, {high:.4f}]"
    lines.append(
      f"ceiling {c.center:.4f} ± {c.error:.4f}{interval} (split-half, "
      f"Spearman-Brown, median over {len(score.neuroid_ids)} neuroids); "
      f"ceiled = {'r^2/c' if score.normalization == 'r2_over_c' else '(r/c)^2'}"
    )
  best = score.best.layer
  header = f"{'layer':<16}{'features':>10}{'raw r':>9}{'± sem':>9}{'ceiled':>9}"
  if extra.intervals:
    level = next(iter(extra.intervals.values())).level
    header += f"  {f'raw {100 * level:.0f}% CI':>18}  {'ceiled CI':>18}"
  lines.append(header)
  for s in score.layers:
    ceiled = "-" if s.ceiled is None else f"{s.ceiled:.4f}"
    row = (
      f"{s.layer:<16}{s.n_features:>10}{s.raw.center:>9.4f}{s.raw.error:>9.4f}"
      f"{ceiled:>9}"
    )
    interval = extra.intervals.get(s.layer)
    if interval is not None:
      row += f"  {_span(interval.raw):>18}  {_span(interval.ceiled):>18}"
    lines.append(row + ("  <- best" if s.layer == best else ""))
  lines.extend(f"note: {n}" for n in score.notes)
  return "\n".join(lines)


def _span(pair) -> str:
  return "-" if pair is None else f"[{pair[0]:.4f}, {pair[1]:.4f}]"


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
