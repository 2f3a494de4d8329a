r"""Renders the results store (and training runs) as an HTML page with plots.

  python -m launch.report --store=results/jaxscore.sqlite --out=results/report \
    [--train_runs=/tmp/plain,/tmp/aligned]

``<out>/index.html`` holds the model x benchmark leaderboard with region and
overall means, the committed layers, and a PNG of each model's layer
profiles beside it; ``--train_runs`` adds held-out score against step for
each ``launch.train`` workdir named, all runs on the same axes
(``jaxscore.report`` says what each number is).
"""

from __future__ import annotations

from absl import app, flags, logging

from jaxscore import report
from launch import common

_OUT = flags.DEFINE_string("out", "results/report", "Folder the page is written to.")
_TRAIN_RUNS = flags.DEFINE_list(
  "train_runs", [], "launch.train workdirs (holding scores.json) to plot."
)


def main(argv):
  del argv
  try:
    rows = report.load_rows(common.STORE.value)
    runs = report.load_train_runs(_TRAIN_RUNS.value)
    page = report.write(_OUT.value, rows, train_runs=runs, source=common.STORE.value)
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  logging.info("%d rows, %d training runs", len(rows), len(runs))
  print(f"report written to {page}")


if __name__ == "__main__":
  app.run(main)
