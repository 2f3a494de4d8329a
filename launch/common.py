"""Flags shared by the launch scripts.

absl keeps one global flag registry, so a flag two scripts both need is
defined here once and imported by each; a script's own flags stay in it.
"""

from absl import app, flags

LAYERS = flags.DEFINE_list("layers", None, "Layers to score (default: all).")
BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Images per forward pass.")
DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "float64"], "Compute dtype.")
STORE = flags.DEFINE_string(
  "store", "results/jaxscore.sqlite", "The SQLite results store."
)
SEED = flags.DEFINE_integer(
  "seed", 0, "Seed of random model inits (and of sweep's commitment partition)."
)


def check_run_flags() -> None:
  """Refuses values of the shared flags that no run can use."""
  if BATCH_SIZE.value < 1:
    raise app.UsageError(f"--batch_size must be at least 1, got {BATCH_SIZE.value}.")
  if LAYERS.value is not None and not LAYERS.value:
    raise app.UsageError("--layers is empty; name layers, or leave it out for all.")
