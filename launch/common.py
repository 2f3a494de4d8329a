"""Flags shared by the launch scripts.

absl keeps one global flag registry, so a flag two scripts both need is
defined here once and imported by each; a script's own flags stay in it.
"""

from absl import flags

LAYERS = flags.DEFINE_list("layers", None, "Layers to score (default: all).")
BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Images per forward pass.")
DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "float64"], "Compute dtype.")
SEED = flags.DEFINE_integer(
  "seed", 0, "Seed of random model inits (and of sweep's commitment partition)."
)
