"""A sweep report: rows of the results store as tables, plots and one HTML page.

Rows (``jaxscore.store.Store.rows``) become tidy tables, the tables become
matplotlib figures (no pyplot, so no global state and no display), and
``write`` puts one self-contained ``index.html`` with its PNGs beside it into
a folder, built in a temporary folder next to it and renamed into place.

What the page holds:

- the leaderboard: per model and benchmark the best layer's score (ceiled
  where the benchmark has a ceiling, raw otherwise), the region means and
  the overall mean (a region's score is the mean of its benchmarks, the
  overall score the mean of the regions);
- the committed layers (``"committed"`` rows, ``jaxscore.commitment``) with
  their held-out scores;
- each model's layer profiles: raw score against layer, in the order the
  rows were written, with a band of +-1.96 errors (standard error over
  splits for regression, jackknife error for RSA) and the ceiling as a
  dashed line;
- optionally, training runs (``launch.train``'s ``scores.json``): held-out
  score against step, every run on the same axes.

Regions come from ``REGIONS``, keyed on benchmark name prefixes; a benchmark
no prefix matches is listed under ``"other"`` and left out of the overall
mean.
"""

from jaxscore.report.figures import profile_figure, train_figure
from jaxscore.report.page import GENERATOR, write
from jaxscore.report.tables import (
  OTHER,
  REGIONS,
  Cell,
  Committed,
  Leaderboard,
  Profile,
  TrainRun,
  committed,
  leaderboard,
  load_rows,
  load_train_runs,
  profiles,
  region_of,
)

__all__ = [
  "GENERATOR",
  "OTHER",
  "REGIONS",
  "Cell",
  "Committed",
  "Leaderboard",
  "Profile",
  "TrainRun",
  "committed",
  "leaderboard",
  "load_rows",
  "load_train_runs",
  "profile_figure",
  "profiles",
  "region_of",
  "train_figure",
  "write",
]
