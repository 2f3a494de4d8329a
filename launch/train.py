r"""Trains a small CNN on the V4 images, scoring held-out V4 predictivity.

  python -m launch.train --workdir=results/train/aligned --align_weight=1
  python -m launch.train --workdir=/tmp/smoke --smoke   # seconds

The run (held-out split, loss, alignment term, files written, resuming) is
described in ``jaxscore.trainer``. ``--smoke`` shrinks every setting not
given on the command line to a run of seconds (``trainer.SMOKE``). Rerun a
killed run with the same flags and it resumes from its last checkpoint.
``--seed``, ``--layers`` (the layers scored) and ``--batch_size`` (images
per forward pass of the scoring) are the flags shared with the other
launch scripts.
"""

from __future__ import annotations

import json

from absl import app, flags, logging

import benchmarks
from jaxscore import trainer
from launch import common

_DEFAULT = trainer.Config(workdir="")
_WORKDIR = flags.DEFINE_string("workdir", None, "Checkpoints, scores.json, plot.")
_SMOKE = flags.DEFINE_bool("smoke", False, "Shrink unset settings to seconds.")
# flag name -> (Config field, flag)
_FLAGS = {
  "train_benchmark": (
    "benchmark",
    flags.DEFINE_string(
      "train_benchmark", _DEFAULT.benchmark, "Labelled benchmark trained on."
    ),
  ),
  "steps": ("steps", flags.DEFINE_integer("steps", _DEFAULT.steps, "Train steps.")),
  "train_batch_size": (
    "batch_size",
    flags.DEFINE_integer(
      "train_batch_size", _DEFAULT.batch_size, "Images per classification batch."
    ),
  ),
  "learning_rate": (
    "learning_rate",
    flags.DEFINE_float("learning_rate", _DEFAULT.learning_rate, "Adam step size."),
  ),
  "split_seed": (
    "split_seed",
    flags.DEFINE_integer("split_seed", _DEFAULT.split_seed, "Held-out split seed."),
  ),
  "holdout_per_object": (
    "holdout_per_object",
    flags.DEFINE_integer(
      "holdout_per_object", _DEFAULT.holdout_per_object, "Held-out images/object."
    ),
  ),
  "align_weight": (
    "align_weight",
    flags.DEFINE_float("align_weight", _DEFAULT.align_weight, "Alignment weight."),
  ),
  "align_layer": (
    "align_layer",
    flags.DEFINE_string("align_layer", _DEFAULT.align_layer, "Layer aligned."),
  ),
  "align_batch": (
    "align_batch",
    flags.DEFINE_integer("align_batch", _DEFAULT.align_batch, "Alignment images."),
  ),
  "score_every": (
    "score_every",
    flags.DEFINE_integer("score_every", _DEFAULT.score_every, "Score every N steps."),
  ),
  "checkpoint_every": (
    "checkpoint_every",
    flags.DEFINE_integer(
      "checkpoint_every", _DEFAULT.checkpoint_every, "Checkpoint every N steps."
    ),
  ),
  "n_boot": (
    "n_boot",
    flags.DEFINE_integer("n_boot", _DEFAULT.n_boot, "Score interval resamples."),
  ),
  "seed": ("seed", common.SEED),
  "layers": ("score_layers", common.LAYERS),
  "batch_size": ("score_batch_size", common.BATCH_SIZE),
}


def config_from_flags() -> trainer.Config:
  """The config: the flags given on the command line over the (smoke) defaults."""
  given = {field: flag.value for field, flag in _FLAGS.values() if flag.present}
  return trainer.get_config(_WORKDIR.value, smoke=_SMOKE.value, **given)


def _log(record: dict) -> None:
  scores = {k.split("/")[-2]: v for k, v in record.items() if k.endswith("/raw")}
  text = ", ".join(f"{layer} {value:.4f}" for layer, value in scores.items())
  logging.info("step %d: held-out raw r %s", record["step"], text)


def main(argv):
  del argv
  if not _WORKDIR.value:
    raise app.UsageError("--workdir is required.")
  try:
    config = config_from_flags()
    benchmark = benchmarks.load_benchmark(config.benchmark)
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  try:
    result = trainer.train(config, benchmark, on_record=_log)
  except ValueError as e:  # settings the run refuses, named in the message
    raise app.UsageError(str(e)) from e
  if result["resumed_from"] is not None:
    logging.info("Resumed from the checkpoint of step %d.", result["resumed_from"])
  timing = result["timing"]
  if timing["train_step_s"] and timing["callback_run_s"]:
    logging.info(
      "one callback run costs %.3f s = %.1f train steps of %.4f s",
      timing["callback_run_s"],
      timing["callback_run_s"] / timing["train_step_s"],
      timing["train_step_s"],
    )
  print(json.dumps(timing))


if __name__ == "__main__":
  app.run(main)
