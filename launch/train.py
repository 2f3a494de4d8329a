r"""Trains a small CNN on the V4 images, scoring held-out V4 predictivity.

The 640 naturalistic images of the V4 session (8 objects x 80) are split once
(``--split_seed``): ``--holdout_per_object`` images of each object are held
out and never enter the loss; the model (the ``tiny_cnn`` trunk of the model
table with an 8-way linear head on its ``pool`` layer) learns to classify
the object in the rest. With ``--align_weight`` > 0 the loss also subtracts
that weight times the differentiable ridge predictivity
(``jaxscore.differentiable``) of ``--align_layer`` for the V4 responses to a
random batch of the training images. Every ``--score_every`` steps the
scoring callback (``jaxscore.training``) scores every layer on the held-out
images with the benchmark's own regression and ceiling.

The workdir gets orbax checkpoints every ``--checkpoint_every`` steps (a
rerun with the same flags resumes from the last one and ends bit-identical
to an uninterrupted run: every batch is a function of the seed and the step
only), ``scores.json`` (one record per scored step, rewritten atomically)
and ``scores.png``.

  python -m launch.train --workdir=/tmp/run --steps=300 --align_weight=1
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from absl import app, flags, logging

import benchmarks
from jaxscore import activations, differentiable, kernels, training
from jaxscore.model import VisionModel
from models import tiny

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Folder for checkpoints, scores and plot.")
flags.DEFINE_string("benchmark", "cowley2023.V4-ridge", "A cowley2023.V4 benchmark.")
flags.DEFINE_integer("steps", 300, "Training steps.")
flags.DEFINE_integer("batch_size", 64, "Images per classification batch.")
flags.DEFINE_float("learning_rate", 2e-3, "Adam learning rate.")
flags.DEFINE_integer("seed", 0, "Seed of the initialisation and data order.")
flags.DEFINE_integer("split_seed", 0, "Seed of the held-out split.")
flags.DEFINE_integer("holdout_per_object", 20, "Held-out images per object.")
flags.DEFINE_float("align_weight", 0.0, "Weight of the V4 alignment term.")
flags.DEFINE_string("align_layer", "conv3", "Layer the alignment term reads.")
flags.DEFINE_integer("align_batch", 128, "Training images per alignment batch.")
flags.DEFINE_integer("score_every", 25, "Score the held-out images every N steps.")
flags.DEFINE_integer("checkpoint_every", 50, "Checkpoint every N steps.")
flags.DEFINE_list("score_layers", list(tiny.LAYERS), "Layers the callback scores.")
flags.DEFINE_integer("n_boot", 200, "Bootstrap resamples of the score interval.")
flags.DEFINE_integer(
  "stop_after", 0, "Testing: exit after this step without a final save (0: off)."
)

N_CLASSES = 8
# Relative ridge penalties of the alignment term, in units of the mean
# eigenvalue of the training kernel; softmin-combined (jaxscore.differentiable).
ALIGN_ALPHAS = tuple(float(a) for a in np.logspace(-3, 1, 5))
ALIGN_SPLITS = 2  # random 75/25 splits of each alignment batch


@dataclasses.dataclass(frozen=True)
class Config:
  """Everything a run depends on (the flags, as one value)."""

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
  score_layers: tuple[str, ...] = tiny.LAYERS
  n_boot: int = 200
  stop_after: int = 0


class Classifier(nn.Module):
  """The ``tiny_cnn`` trunk and a linear head on its ``pool`` layer."""

  @nn.compact
  def __call__(self, images: jax.Array) -> dict[str, jax.Array]:
    """Args: images (n_images, 32, 32, 3), normalised."""
    outputs = dict(tiny.TinyCNN(name="trunk")(images))
    outputs["logits"] = nn.Dense(N_CLASSES, name="head")(outputs["pool"])
    return outputs


def build_model(seed: int) -> VisionModel:
  module = Classifier()
  images = jnp.zeros((1, tiny.IMAGE_SIZE, tiny.IMAGE_SIZE, 3), jnp.float32)
  return VisionModel(
    name="tiny_cnn_classifier",
    apply=module.apply,
    variables=module.init(jax.random.key(seed), images),
    layers=(*tiny.LAYERS, "logits"),
    image_size=tiny.IMAGE_SIZE,
  )


def held_out_split(labels: np.ndarray, per_object: int, seed: int):
  """(train rows, held-out rows): ``per_object`` random rows of each label."""
  rng = np.random.default_rng(seed)
  held = []
  for label in np.unique(labels):
    rows = np.flatnonzero(labels == label)
    if not 3 <= per_object < len(rows) - 3:
      raise ValueError(
        f"holdout_per_object must leave at least 3 images of each object on "
        f"both sides ({len(rows)} of {label!r}), got {per_object}."
      )
    held.extend(rng.choice(rows, per_object, replace=False).tolist())
  held = np.sort(held)
  return np.setdiff1d(np.arange(len(labels)), held), held


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
    axis.plot(steps, [r[f"{key}/raw"] for r in records], label=layer)
    axis.fill_between(
      steps,
      [r[f"{key}/raw_low"] for r in records],
      [r[f"{key}/raw_high"] for r in records],
      alpha=0.2,
    )
  axis.set_xlabel("step")
  axis.set_ylabel("held-out V4 raw r (median over neuroids)")
  axis.set_title(name)
  axis.legend()
  figure.tight_layout()
  _write_atomic(workdir / "scores.png", lambda p: figure.savefig(p, format="png"))
  plt.close(figure)


def _make_train_step(config, apply, optimizer, data):
  """The jitted step; batches are drawn from (seed, step) inside it."""
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
    outputs = apply({"params": params}, images[rows])
    loss = optax.softmax_cross_entropy_with_integer_labels(
      outputs["logits"], labels[rows]
    ).mean()
    metrics = {
      "train/loss": loss,
      "train/accuracy": jnp.mean(jnp.argmax(outputs["logits"], -1) == labels[rows]),
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
        features.reshape(config.align_batch, -1),
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


def train(config: Config) -> dict:
  """Trains (or resumes) the run in ``config.workdir``.

  Returns:
    ``params`` (the final parameters), ``records`` (one dict per scored
    step) and ``timing`` (seconds per train step and per callback run).
  """
  workdir = Path(config.workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  benchmark = benchmarks.load_benchmark(config.benchmark)
  if not config.benchmark.startswith("cowley2023.V4-") or benchmark.labels is None:
    raise ValueError(
      "benchmark must be cowley2023.V4-pls or cowley2023.V4-ridge (labelled "
      f"objects), got {config.benchmark!r}."
    )
  model = build_model(config.seed)
  if config.align_layer not in model.layers:
    raise ValueError(
      f"align_layer must be one of {', '.join(model.layers)}, got "
      f"{config.align_layer!r}."
    )
  train_rows, held_rows = held_out_split(
    benchmark.labels, config.holdout_per_object, config.split_seed
  )
  classes = {name: i for i, name in enumerate(np.unique(benchmark.labels))}
  stimuli = benchmark.stimuli.subset([benchmark.stimulus_ids[i] for i in train_rows])
  data = {
    "images": jnp.asarray(
      activations.preprocess(
        stimuli.images, model, source_degrees=benchmark.visual_degrees
      )
    ),
    "labels": jnp.asarray([classes[benchmark.labels[i]] for i in train_rows]),
    "targets": jnp.asarray(benchmark.targets[train_rows], jnp.float32),
  }
  callback = training.ScoreCallback(
    benchmark,
    model,
    layers=config.score_layers,
    stimulus_ids=[benchmark.stimulus_ids[i] for i in held_rows],
    n_boot=config.n_boot,
  )
  optimizer = optax.adam(config.learning_rate)
  params = model.variables["params"]
  opt_state = optimizer.init(params)
  train_step = _make_train_step(config, model.apply, optimizer, data)

  options = ocp.CheckpointManagerOptions(
    save_interval_steps=config.checkpoint_every,
    max_to_keep=2,
    enable_async_checkpointing=False,
  )
  manager = ocp.CheckpointManager(workdir / "checkpoints", options=options)
  start, records = 0, []
  if manager.latest_step() is not None:
    start = manager.latest_step()
    restored = manager.restore(
      start,
      args=ocp.args.StandardRestore({"params": params, "opt_state": opt_state}),
    )
    params, opt_state = restored["params"], restored["opt_state"]
    log = json.loads((workdir / "scores.json").read_text())
    records = [r for r in log["records"] if r["step"] <= start]
    logging.info("Resumed from the checkpoint of step %d.", start)

  step_times, score_times = [], []

  def score(step, metrics):
    began = time.perf_counter()
    record = {"step": step, **{k: float(v) for k, v in metrics.items()}}
    record.update(callback.run({"params": params}))
    score_times.append(time.perf_counter() - began)
    records.append(record)
    _write_log(workdir, config, records)
    _plot(workdir, callback.name, config.score_layers, records)
    layer = config.score_layers[-1]
    logging.info(
      "step %d: %s raw r %.4f [%.4f, %.4f]",
      step,
      layer,
      record[f"score/{callback.name}/{layer}/raw"],
      record[f"score/{callback.name}/{layer}/raw_low"],
      record[f"score/{callback.name}/{layer}/raw_high"],
    )

  if start == 0:
    score(0, {})
  for step in range(start + 1, config.steps + 1):
    began = time.perf_counter()
    params, opt_state, metrics = train_step(params, opt_state, step)
    jax.block_until_ready(params)
    step_times.append(time.perf_counter() - began)
    if step % config.checkpoint_every == 0:
      manager.save(
        step, args=ocp.args.StandardSave({"params": params, "opt_state": opt_state})
      )
    if step % config.score_every == 0 or step == config.steps:
      score(step, metrics)
    if step == config.stop_after:
      manager.close()
      return {"params": params, "records": records, "timing": {}}
  manager.save(
    config.steps,
    args=ocp.args.StandardSave({"params": params, "opt_state": opt_state}),
    force=True,
  )
  manager.wait_until_finished()
  manager.close()
  timing = {
    "train_step_s": float(np.median(step_times[1:])) if len(step_times) > 1 else None,
    "callback_run_s": float(np.median(score_times[1:]))
    if len(score_times) > 1
    else None,
  }
  if timing["train_step_s"] and timing["callback_run_s"]:
    logging.info(
      "one callback run costs %.3f s = %.1f train steps of %.3f s",
      timing["callback_run_s"],
      timing["callback_run_s"] / timing["train_step_s"],
      timing["train_step_s"],
    )
  return {"params": params, "records": records, "timing": timing}


def config_from_flags() -> Config:
  values = {field.name: FLAGS[field.name].value for field in dataclasses.fields(Config)}
  values["score_layers"] = tuple(values["score_layers"])
  return Config(**values)


def main(argv):
  del argv
  result = train(config_from_flags())
  if result["timing"]:
    print(json.dumps(result["timing"]))


if __name__ == "__main__":
  flags.mark_flag_as_required("workdir")
  app.run(main)
