"""The report's HTML page, written with its PNGs into a folder atomically."""

from __future__ import annotations

import datetime
import html
import json
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from jaxscore.report.figures import profile_figure, train_figure
from jaxscore.report.tables import (
  OTHER,
  Committed,
  Leaderboard,
  TrainRun,
  committed,
  leaderboard,
  profiles,
  region_of,
)

GENERATOR = "jaxscore.report"


def write(
  out: str | Path,
  rows: Sequence[dict],
  *,
  train_runs: Sequence[TrainRun] = (),
  source: str = "",
) -> Path:
  """Writes the report into folder ``out``; returns the page's path.

  Args:
    out: the folder; replaced whole if it holds an earlier report, refused
      if it holds anything else.
    rows: store rows (``Store.rows``).
    train_runs: training runs to plot (``load_train_runs``).
    source: where the rows came from, for the page's header.
  """
  out = Path(out)
  if not rows:
    raise ValueError("rows must hold at least one store row, got none.")
  if out.exists() and not _is_report(out):
    raise ValueError(
      f"out must be a new folder or one holding an earlier report, got "
      f"{str(out)!r}, which holds something else."
    )
  all_profiles, notes = profiles(rows)
  board = leaderboard(all_profiles)
  out.parent.mkdir(parents=True, exist_ok=True)
  tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
  try:
    plots = []
    models = list(dict.fromkeys(p.model for p in all_profiles))
    for i, model in enumerate(models):
      mine = [p for p in all_profiles if p.model == model]
      name = f"profile-{i:03d}-{_slug(model)}.png"
      _save(profile_figure(mine), tmp / name)
      plots.append((f"{model}", name))
    train_plots = []
    benchmarks = dict.fromkeys(b for run in train_runs for b, _ in run.scores)
    for i, benchmark in enumerate(benchmarks):
      name = f"train-{i:03d}-{_slug(benchmark)}.png"
      _save(train_figure(train_runs, benchmark), tmp / name)
      train_plots.append((benchmark, name))
    page = _page(
      board, committed(rows), plots, train_runs, train_plots, notes, source, rows
    )
    (tmp / "index.html").write_text(page)
    _replace_folder(tmp, out)
  finally:
    if tmp.exists():
      shutil.rmtree(tmp)
  return out / "index.html"


def _is_report(folder: Path) -> bool:
  page = folder / "index.html"
  if not folder.is_dir():
    return False
  if not any(folder.iterdir()):
    return True
  return page.is_file() and f'content="{GENERATOR}"' in page.read_text()[:2000]


def _replace_folder(new: Path, out: Path) -> None:
  """Renames ``new`` onto ``out``; an old ``out`` is moved aside first."""
  old = None
  if out.exists():
    old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".old"))
    os.rename(out, old / "report")
  os.rename(new, out)
  if old is not None:
    shutil.rmtree(old)


def _save(figure: Figure, path: Path) -> None:
  figure.savefig(path, format="png", dpi=110)


def _slug(name: str) -> str:
  return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:60]


def _fmt(value: float | None, digits: int = 3) -> str:
  if value is None or not np.isfinite(value):
    return "&mdash;"
  return f"{value:.{digits}f}"


_CSS = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: right; }
th { background: #eee; } td.name, th.name { text-align: left; }
td small { color: #666; display: block; font-size: 0.8em; }
td.mean { background: #f4f8ff; } td.overall { background: #e6efff; font-weight: bold; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0 1.5em; }
p.note { color: #555; font-size: 0.9em; max-width: 60em; }
"""


def _page(board, commits, plots, runs, train_plots, notes, source, rows) -> str:
  e = html.escape
  n_models = len({(r["model"], r["params_hash"]) for r in rows})
  stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
  parts = [
    "<!DOCTYPE html>",
    '<html lang="en"><head><meta charset="utf-8">',
    f'<meta name="generator" content="{GENERATOR}">',
    f"<title>jaxscore report</title><style>{_CSS}</style></head><body>",
    "<h1>jaxscore sweep report</h1>",
    f"<p>{len(rows)} rows, {n_models} models, "
    f"{len({r['benchmark'] for r in rows})} benchmarks"
    f"{' from ' + e(source) if source else ''}; written {stamp}.</p>",
    "<h2>Leaderboard</h2>",
    _leaderboard_table(board),
  ]
  if commits:
    parts += ["<h2>Committed layers</h2>", _committed_table(commits)]
  parts.append("<h2>Layer profiles</h2>")
  parts.append(
    '<p class="note">Raw score of every layer, in the order the layers were '
    "scored; the band is ±1.96 errors (standard error over splits for "
    "regression, jackknife error over stimuli for RSA); the dashed line is "
    "the benchmark's ceiling; the star marks the best layer (ceiled score, "
    "raw without a ceiling).</p>"
  )
  for model, name in plots:
    parts.append(f'<img src="{e(name)}" alt="layer profiles of {e(model)}">')
  if runs:
    parts += ["<h2>Training runs</h2>", _runs_table(runs)]
    for benchmark, name in train_plots:
      parts.append(f'<img src="{e(name)}" alt="training runs on {e(benchmark)}">')
  if notes:
    parts.append("<h2>Notes</h2><ul>")
    parts += [f"<li>{e(n)}</li>" for n in notes]
    parts.append("</ul>")
  parts.append("</body></html>")
  return "\n".join(parts) + "\n"


def _leaderboard_table(board: Leaderboard) -> str:
  e = html.escape
  groups: dict[str, list[str]] = {}
  for b in board.benchmarks:
    groups.setdefault(region_of(b), []).append(b)
  head1 = ['<th class="name" rowspan="2">model</th>']
  head1 += [f'<th colspan="{len(bs)}">{e(r)}</th>' for r, bs in groups.items()]
  if board.regions:
    head1.append(f'<th colspan="{len(board.regions)}">region means</th>')
  head1.append('<th rowspan="2">overall</th>')
  head2 = []
  for b in board.benchmarks:
    kinds = sorted({c.kind for (_, cb), c in board.cells.items() if cb == b})
    head2.append(f"<th>{e(b)}<br><small>{'/'.join(kinds)}</small></th>")
  head2 += [f"<th>{e(r)}</th>" for r in board.regions]
  body = []
  for model in board.models:
    cells = [f'<td class="name">{e(model)}</td>']
    for b in board.benchmarks:
      cell = board.cells.get((model, b))
      if cell is None:
        cells.append("<td>&mdash;</td>")
      else:
        cells.append(f"<td>{_fmt(cell.value)}<small>{e(cell.layer)}</small></td>")
    cells += [
      f'<td class="mean">{_fmt(board.region_scores[model, r])}</td>'
      for r in board.regions
    ]
    cells.append(f'<td class="overall">{_fmt(board.overall[model])}</td>')
    body.append(f"<tr>{''.join(cells)}</tr>")
  other = ""
  if OTHER in groups:
    other = (
      f" Benchmarks under &ldquo;{OTHER}&rdquo; have no region in "
      "jaxscore.report.REGIONS and are left out of the overall mean."
    )
  return (
    '<table id="leaderboard"><thead>'
    f"<tr>{''.join(head1)}</tr><tr>{''.join(head2)}</tr></thead>"
    f"<tbody>{''.join(body)}</tbody></table>"
    '<p class="note">Each benchmark cell is the best layer&rsquo;s score (named '
    "below it) on all stimuli: ceiled where the benchmark has a ceiling, raw "
    "otherwise, as its header says; the best layer is chosen on the same data "
    "(see the committed layers for a held-out choice). A region&rsquo;s score "
    "is the mean of its benchmarks, the overall score the mean of the regions; "
    f"&mdash; where a model lacks one of them.{other}</p>"
  )


def _committed_table(commits: Sequence[Committed]) -> str:
  e = html.escape
  head = (
    '<tr><th class="name">model</th><th class="name">benchmark</th>'
    '<th class="name">committed layer</th><th>held-out score</th>'
    "<th>raw ± error</th><th>stimuli: commitment / scoring</th><th>seed</th></tr>"
  )
  body = []
  for c in commits:
    halves = f"{c.n_commitment or '?'} / {c.n_scoring or '?'}"
    body.append(
      f'<tr><td class="name">{e(c.model)}</td><td class="name">{e(c.benchmark)}'
      f'</td><td class="name">{e(c.layer)}</td>'
      f"<td>{_fmt(c.value)} <small>{c.kind}</small></td>"
      f"<td>{_fmt(c.raw)} ± {_fmt(c.error)}</td><td>{halves}</td>"
      f"<td>{c.seed}</td></tr>"
    )
  return (
    f'<table id="committed"><thead>{head}</thead><tbody>{"".join(body)}</tbody>'
    '</table><p class="note">The layer is chosen on one half of the stimuli '
    "and scored on the other (jaxscore.commitment); ceiled where the benchmark "
    "has a ceiling, raw otherwise.</p>"
  )


def _runs_table(runs: Sequence[TrainRun]) -> str:
  e = html.escape
  keys = sorted({k for run in runs for k in run.config if k != "workdir"})
  differ = [k for k in keys if len({json.dumps(run.config.get(k)) for run in runs}) > 1]
  shown = differ or [k for k in ("benchmark", "align_weight") if k in keys]
  head = '<tr><th class="name">run</th><th class="name">folder</th>'
  head += "<th>scored steps</th>" + "".join(f"<th>{e(k)}</th>" for k in shown)
  body = []
  for run in runs:
    values = "".join(f"<td>{e(str(run.config.get(k, '')))}</td>" for k in shown)
    body.append(
      f'<tr><td class="name">{e(run.label)}</td><td class="name">'
      f"{e(str(run.folder))}</td><td>{len(run.steps)} "
      f"({int(run.steps.min())}&ndash;{int(run.steps.max())})</td>{values}</tr>"
    )
  return (
    f'<table id="train-runs"><thead>{head}</thead><tbody>{"".join(body)}'
    "</tbody></table>"
  )
