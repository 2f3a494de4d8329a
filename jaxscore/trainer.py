r"""Trains a small CNN on a benchmark's images, scoring held-out predictivity.

The images of a labelled benchmark (the 640 naturalistic images of the
Cowley V4 session, 8 objects x 80) are split once (``split_seed``):
``holdout_per_object`` images of each object are held out and never enter
the loss; the model (the ``tiny_cnn`` trunk of ``models.tiny`` with a linear
head on its ``pool`` layer) learns to classify the object in the rest. With
``align_weight`` > 0 the loss also subtracts that weight times the
differentiable ridge predictivity (``jaxscore.differentiable``) of
``align_layer`` for the recorded responses to a random batch of the
training images. Every ``score_every`` steps the scoring callback
(``jaxscore.training``) scores the layers on the held-out images only, with
the benchmark's own regression and ceiling.

The workdir gets orbax checkpoints every ``checkpoint_every`` steps and at
the end, ``scores.json`` (the config and one record per scored step,
rewritten atomically after each) and ``scores.png`` (raw r against step).
Calling ``train`` again on the same workdir and config resumes from the
last checkpoint and ends bit-identical to an uninterrupted run: every batch
is a function of (seed, step) only, and a step's record is written before
its checkpoint, so a checkpoint never runs ahead of the records.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp

from jaxscore import activations, differentiable, kernels, training
from jaxscore.benchmark import NeuralBenchmark
from jaxscore.model import VisionModel
from models import tiny

LAYERS = (*tiny.LAYERS, "logits")
# Relative ridge penalties of the alignment term, in units of the mean
# eigenvalue of the training kernel; softmin-combined (jaxscore.differentiable).
ALIGN_ALPHAS = tuple(float(a) for a in np.logspace(-3, 1, 5))
ALIGN_SPLITS = 2  # random 75/25 splits of each alignment batch


@dataclasses.dataclass(frozen=True)
class Config:
  """Everything a run depends on.

  Attributes:
    workdir: folder of the checkpoints, ``scores.json`` and ``scores.png``.
    benchmark: identifier of a labelled ``NeuralBenchmark`` (its images are
      trained on and scored).
    steps: training steps.
    batch_size: images per classification batch.
    learning_rate: Adam learning rate.
    seed: seed of the initialisation and of every batch.
    split_seed: seed of the held-out split.
    holdout_per_object: held-out images per object (label).
    align_weight: weight of the alignment term (0: plain classification).
    align_layer: layer the alignment term reads.
    align_batch: training images per alignment batch.
    score_every: score the held-out images every N steps (and at 0 and the
      end).
    checkpoint_every: checkpoint every N steps (and at the end).
    score_layers: layers the callback scores.
    score_batch_size: images per forward pass inside the callback.
    n_boot: bootstrap resamples of the score interval (0: split sem).
  """

  workdir: str
  benchmark: str = "cowley2023.V4-ridge"
  steps: int = 300
  batch_size: int = 64
  learning_rate: float = 2e-3
  seed: int = 0
  split_seed: int = 0
  holdout_per_object: int = 20
  align_weight: float = 0.0
  align_layer: str = "conv3"
  align_batch: int = 128
  score_every: int = 25
  checkpoint_every: int = 50
  score_layers: tuple[str, ...] = LAYERS
  score_batch_size: int = 64
  n_boot: int = 200


# What the smoke switch changes: a run of seconds that still checkpoints,
# scores and resumes.
SMOKE = dict(
  steps=6,
  batch_size=32,
  holdout_per_object=10,  # 8 test images per split: one per object
  align_batch=64,
  score_every=3,
  checkpoint_every=2,
  score_layers=("conv3", "pool"),
  n_boot=20,
  align_weight=1.0,  # the differentiated score in the loss runs too
)


def get_config(workdir: str, *, smoke: bool = False, **overrides) -> Config:
  """The default config (or the smoke one), with ``overrides`` on top."""
  values = {**(SMOKE if smoke else {}), **overrides}
  unknown = sorted(set(values) - {f.name for f in dataclasses.fields(Config)})
  if unknown:
    raise ValueError(f"overrides must be Config fields; got unknown {unknown}.")
  if "score_layers" in values:
    values["score_layers"] = tuple(values["score_layers"])
  return Config(workdir=workdir, **values)


class Classifier(nn.Module):
  """The ``tiny_cnn`` trunk and a linear head on its ``pool`` layer."""

  n_classes: int

  @nn.compact
  def __call__(self, images: jax.Array) -> dict[str, jax.Array]:
    """Args: images (n_images, 32, 32, 3), normalised."""
    outputs = dict(tiny.TinyCNN(name="trunk")(images))
    outputs["logits"] = nn.Dense(self.n_classes, name="head")(outputs["pool"])
    return outputs


def build_model(n_classes: int, *, key: jax.Array) -> VisionModel:
  """The classifier as a ``VisionModel``, initialised from ``key``."""
  module = Classifier(n_classes)
  images = jnp.zeros((1, tiny.IMAGE_SIZE, tiny.IMAGE_SIZE, 3), jnp.float32)
  return VisionModel(
    name="tiny_cnn_classifier",
    apply=module.apply,
    variables=module.init(key, images),
    layers=LAYERS,
    image_size=tiny.IMAGE_SIZE,
  )


def held_out_split(
  labels: np.ndarray, per_object: int, *, key: jax.Array
) -> tuple[np.ndarray, np.ndarray]:
  """(train rows, held-out rows), sorted: ``per_object`` random rows per label.

  Args:
    labels: (n_stimuli,) object label of every stimulus.
    per_object: rows of each label to hold out.
    key: PRNG key; label ``i`` (in sorted order) draws from ``fold_in(key, i)``.
  """
  held = []
  for i, label in enumerate(np.unique(labels)):
    rows = np.flatnonzero(labels == label)
    if not 3 <= per_object <= len(rows) - 3:
      raise ValueError(
        f"holdout_per_object must leave at least 3 images of each object on "
        f"both sides ({len(rows)} of {str(label)!r}), got {per_object}."
      )
    order = np.asarray(jax.random.permutation(jax.random.fold_in(key, i), len(rows)))
    held.extend(rows[order[:per_object]].tolist())
  held = np.sort(held)
  return np.setdiff1d(np.arange(len(labels)), held), held


def make_train_step(config: Config, apply, optimizer, data: dict):
  """The jitted ``(params, opt_state, step) -> (params, opt_state, metrics)``.

  Args:
    config: the run's settings.
    apply: the model's apply function.
    optimizer: an optax transformation.
    data: ``images`` (n_train, 32, 32, 3), ``labels`` (n_train,) int and
      ``targets`` (n_train, n_neuroids) of the training stimuli.

  Every batch is drawn inside the step from (seed, step): the epoch's
  permutation from ``fold_in(fold_in(key(seed), 1), step // per_epoch)``,
  the alignment batch from ``fold_in(fold_in(key(seed), 2), step)``.
  """
  images, labels, targets = data["images"], data["labels"], data["targets"]
  n_train = images.shape[0]
  per_epoch = n_train // config.batch_size
  base = jax.random.key(config.seed)
  alphas = jnp.asarray(ALIGN_ALPHAS, jnp.float32)

  def loss_fn(params, step):
    epoch_key = jax.random.fold_in(jax.random.fold_in(base, 1), step // per_epoch)
    order = jax.random.permutation(epoch_key, n_train)
    rows = jax.lax.dynamic_slice(
      order, ((step % per_epoch) * config.batch_size,), (config.batch_size,)
    )
    logits = apply({"params": params}, images[rows])["logits"]  # (batch, classes)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels[rows])
    loss = loss.mean()
    metrics = {
      "train/loss": loss,
      "train/accuracy": jnp.mean(jnp.argmax(logits, -1) == labels[rows]),
    }
    if config.align_weight > 0:
      key = jax.random.fold_in(jax.random.fold_in(base, 2), step)
      pick = jax.random.permutation(key, n_train)[: config.align_batch]
      features = apply({"params": params}, images[pick])[config.align_layer]
      splits = kernels.shuffle_splits(
        config.align_batch,
        n_splits=ALIGN_SPLITS,
        train_size=0.75,
        key=jax.random.fold_in(key, 1),
      )
      r = differentiable.ridge_predictivity(
        features.reshape(config.align_batch, -1),  # (align_batch, n_features)
        targets[pick],
        splits.train,
        splits.test,
        alphas=alphas,
        relative_alphas=True,
      )
      loss = loss - config.align_weight * r
      metrics["train/align_r"] = r
    return loss, metrics

  @jax.jit
  def train_step(params, opt_state, step):
    grads, metrics = jax.grad(loss_fn, has_aux=True)(params, step)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, metrics

  return train_step


def train(
  config: Config,
  benchmark: NeuralBenchmark,
  *,
  on_record: Callable[[dict], None] | None = None,
) -> dict:
  """Trains (or resumes) the run in ``config.workdir``.

  Args:
    config: the run; ``config.benchmark`` must name ``benchmark``.
    benchmark: a labelled neural benchmark whose stimuli are 8 objects or
      any other labelled set (one class per label).
    on_record: called with every new record (a dict: ``step``, the train
      metrics of that step, the callback's ``score/...`` values), e.g. to
      log it.

  Returns:
    ``params`` (the final parameters), ``records`` (one dict per scored
    step), ``resumed_from`` (the checkpoint step resumed from, or None) and
    ``timing`` (median seconds per train step and per callback run, leaving
    out the first of each, which compiles; None when too few ran).

  Raises:
    ValueError: a benchmark without labels or not the one the config names,
      an unknown layer, batches larger than the training set, or a workdir
      that holds a different run.
  """
  _check(config, benchmark)
  workdir = Path(config.workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  classes = {name: i for i, name in enumerate(np.unique(benchmark.labels))}
  model = build_model(len(classes), key=jax.random.key(config.seed))
  train_rows, held_rows = held_out_split(
    benchmark.labels, config.holdout_per_object, key=jax.random.key(config.split_seed)
  )
  if max(config.batch_size, config.align_batch) > len(train_rows):
    raise ValueError(
      f"batch_size and align_batch must be at most the {len(train_rows)} "
      f"training images, got {config.batch_size} and {config.align_batch}."
    )
  ids = benchmark.stimulus_ids
  stimuli = benchmark.stimuli.subset([ids[i] for i in train_rows])
  data = {
    "images": jnp.asarray(
      activations.preprocess(
        stimuli.images, model, source_degrees=benchmark.visual_degrees
      )
    ),
    "labels": jnp.asarray([classes[benchmark.labels[i]] for i in train_rows]),
    "targets": jnp.asarray(np.asarray(benchmark.targets)[train_rows], jnp.float32),
  }
  callback = training.ScoreCallback(
    benchmark,
    model,
    layers=config.score_layers,
    stimulus_ids=[ids[i] for i in held_rows],
    batch_size=config.score_batch_size,
    n_boot=config.n_boot,
  )
  optimizer = optax.adam(config.learning_rate)
  params = model.variables["params"]
  opt_state = optimizer.init(params)
  train_step = make_train_step(config, model.apply, optimizer, data)

  options = ocp.CheckpointManagerOptions(
    save_interval_steps=config.checkpoint_every,
    max_to_keep=2,
    enable_async_checkpointing=False,
  )
  # orbax wants an absolute path.
  manager = ocp.CheckpointManager(workdir.resolve() / "checkpoints", options=options)
  start, records = manager.latest_step(), []
  if (workdir / "scores.json").exists():
    _check_log(workdir, config)  # even before the first checkpoint
  if start is not None:
    state = _restore(manager, start, {"params": params, "opt_state": opt_state})
    params, opt_state = state["params"], state["opt_state"]
    records = _read_records(workdir, config, start)
  step_times, score_times = [], []

  def score(step, metrics):
    began = time.perf_counter()
    record = {"step": step, **{k: float(v) for k, v in metrics.items()}}
    record.update(callback.run({"params": params}))
    score_times.append(time.perf_counter() - began)
    records.append(record)
    _write_log(workdir, config, records)
    _plot(workdir, callback.name, config.score_layers, records)
    if on_record is not None:
      on_record(record)

  if start is None:
    score(0, {})
  for step in range((start or 0) + 1, config.steps + 1):
    began = time.perf_counter()
    params, opt_state, metrics = train_step(params, opt_state, step)
    jax.block_until_ready(params)
    step_times.append(time.perf_counter() - began)
    if step % config.score_every == 0 or step == config.steps:
      score(step, metrics)
    if step % config.checkpoint_every == 0 or step == config.steps:
      _save(manager, step, {"params": params, "opt_state": opt_state})
  manager.close()
  return {
    "params": params,
    "records": records,
    "resumed_from": start,
    "timing": {
      "train_step_s": _median_after_first(step_times),
      "callback_run_s": _median_after_first(score_times),
    },
  }


def _check(config: Config, benchmark: NeuralBenchmark) -> None:
  if benchmark.labels is None:
    raise ValueError(
      f"benchmark must have object labels to classify, got {benchmark.identifier} "
      "without labels."
    )
  if benchmark.identifier != config.benchmark:
    raise ValueError(
      f"benchmark must be the config's {config.benchmark!r}, got "
      f"{benchmark.identifier!r}."
    )
  for name, chosen in (
    ("align_layer", (config.align_layer,)),
    ("score_layers", config.score_layers),
  ):
    if not chosen or not set(chosen) <= set(LAYERS):
      raise ValueError(
        f"{name} must be among {', '.join(LAYERS)}, got {', '.join(chosen)}."
      )
  for name in ("steps", "batch_size", "align_batch", "score_every", "checkpoint_every"):
    if getattr(config, name) < 1:
      raise ValueError(f"{name} must be at least 1, got {getattr(config, name)}.")
  if config.align_weight > 0 and config.align_batch < 12:
    raise ValueError(
      "align_batch must be at least 12 (3 test images in a 75/25 split), got "
      f"{config.align_batch}."
    )


def _median_after_first(times: list[float]) -> float | None:
  return float(np.median(times[1:])) if len(times) > 1 else None


def _save(manager, step: int, state) -> None:
  # Host copies: saving the jax arrays themselves (orbax's device-to-host
  # transfer threads) left the next XLA run deadlocked now and then on CPU
  # (orbax-checkpoint 0.11, jax 0.10); numpy arrays restore bit-identically.
  manager.save(step, args=ocp.args.StandardSave(jax.device_get(state)), force=True)


def _restore(manager, step: int, like):
  restored = manager.restore(step, args=ocp.args.StandardRestore(jax.device_get(like)))
  return jax.tree.map(jnp.asarray, restored)


def _read_records(workdir: Path, config: Config, step: int) -> list[dict]:
  """The records up to ``step`` of the run being resumed; checks its config."""
  path = workdir / "scores.json"
  if not path.exists():
    raise ValueError(
      f"workdir {workdir} has a checkpoint of step {step} but no scores.json; "
      "use a fresh workdir."
    )
  log = _check_log(workdir, config)
  return [r for r in log["records"] if r["step"] <= step]


def _check_log(workdir: Path, config: Config) -> dict:
  """The workdir's ``scores.json``; refused if written with other settings.

  The workdir itself is not compared: ``x``, ``./x`` and its absolute path
  are the same run.
  """
  log = json.loads((workdir / "scores.json").read_text())
  now = json.loads(json.dumps(dataclasses.asdict(config)))
  changed = sorted(k for k in now if k != "workdir" and log["config"].get(k) != now[k])
  if changed:
    raise ValueError(
      f"workdir {workdir} holds a run with other settings ({', '.join(changed)}: "
      f"{[log['config'].get(k) for k in changed]}, now "
      f"{[now[k] for k in changed]}); resume with the same config or use a "
      "fresh workdir."
    )
  return log


def _write_atomic(path: Path, write) -> None:
  """Calls ``write(tmp_path)`` and renames the result onto ``path``."""
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
  os.close(fd)
  try:
    write(tmp)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def _write_log(workdir: Path, config: Config, records: list[dict]) -> None:
  text = json.dumps(
    {"config": dataclasses.asdict(config), "records": records}, indent=1
  )
  _write_atomic(workdir / "scores.json", lambda p: Path(p).write_text(text))


def _plot(workdir: Path, name: str, layers, records: list[dict]) -> None:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  figure, axis = plt.subplots(figsize=(6, 4))
  steps = [r["step"] for r in records]
  for layer in layers:
    key = f"score/{name}/{layer}"
    (line,) = axis.plot(steps, [r[f"{key}/raw"] for r in records], label=layer)
    axis.fill_between(
      steps,
      [r[f"{key}/raw_low"] for r in records],
      [r[f"{key}/raw_high"] for r in records],
      color=line.get_color(),
      alpha=0.2,
    )
  axis.set_xlabel("step")
  axis.set_ylabel("held-out raw r (median over neuroids)")
  axis.set_title(f"{name}, held-out images")
  axis.legend()
  figure.tight_layout()
  _write_atomic(workdir / "scores.png", lambda p: figure.savefig(p, format="png"))
  plt.close(figure)
