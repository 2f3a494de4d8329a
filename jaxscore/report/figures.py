"""Matplotlib figures of the report's tables (``Figure`` objects, no pyplot:
no global state, no display; PNGs through the Agg canvas on save)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from jaxscore.report.tables import Z_95, Profile, TrainRun


def profile_figure(model_profiles: Sequence[Profile]) -> Figure:
  """One panel per profile of one model: raw score against layer."""
  n = len(model_profiles)
  n_cols = min(n, 3)
  n_rows = -(-n // n_cols)
  n_layers = max(len(p.layers) for p in model_profiles)
  width = max(4.2, 0.42 * n_layers + 1.6)
  figure = Figure(figsize=(width * n_cols, 3.6 * n_rows + 0.5), layout="constrained")
  axes = figure.subplots(n_rows, n_cols, squeeze=False).ravel()
  for axis, p in zip(axes, model_profiles, strict=False):
    x = np.arange(len(p.layers))
    low, high = p.raw - Z_95 * p.error, p.raw + Z_95 * p.error
    axis.fill_between(x, low, high, color="C0", alpha=0.25, lw=0, label="±1.96 error")
    if len(x) == 1:
      axis.errorbar(x, p.raw, yerr=Z_95 * p.error, color="C0", alpha=0.5, capsize=4)
    axis.plot(x, p.raw, "o-", color="C0", ms=4, label="raw score")
    if p.ceiling is not None:
      axis.axhline(p.ceiling, color="k", ls="--", lw=1, label="ceiling")
    best = p.best()
    if best is not None:
      axis.plot(best, p.raw[best], "*", color="C3", ms=13, label="best layer")
    axis.set_xticks(x, p.layers, rotation=45, ha="right", fontsize=8)
    axis.set_xlim(-0.5, len(x) - 0.5)
    axis.tick_params(axis="y", labelsize=8)
    axis.set_ylabel(f"{p.metric}", fontsize=9)
    axis.grid(alpha=0.3)
    half = " (commitment half)" if p.protocol == "commit-select" else ""
    axis.set_title(f"{p.benchmark}{half}", fontsize=10)
  for axis in axes[n:]:
    axis.set_visible(False)
  handles, names = axes[0].get_legend_handles_labels()
  for axis in axes[1:n]:
    for handle, name in zip(*axis.get_legend_handles_labels(), strict=True):
      if name not in names:
        handles.append(handle)
        names.append(name)
  ncols = max(1, min(len(names), int(width * n_cols / 2.0)))
  figure.legend(handles, names, loc="outside lower center", ncols=ncols, fontsize=9)
  figure.suptitle(model_profiles[0].model, fontsize=12, fontweight="bold")
  return figure


def train_figure(runs: Sequence[TrainRun], benchmark: str) -> Figure:
  """One panel per layer: every run's held-out raw score against step, with
  its 95% interval (``raw_low`` to ``raw_high``) as a band."""
  layers = list(
    dict.fromkeys(layer for run in runs for b, layer in run.scores if b == benchmark)
  )
  n_cols = min(len(layers), 2)
  n_rows = -(-len(layers) // n_cols)
  figure = Figure(figsize=(5.2 * n_cols, 3.4 * n_rows + 0.5), layout="constrained")
  axes = figure.subplots(n_rows, n_cols, squeeze=False, sharey=True).ravel()
  for axis, layer in zip(axes, layers, strict=False):
    for i, run in enumerate(runs):
      stats = run.scores.get((benchmark, layer))
      if stats is None:
        continue
      color = f"C{i % 10}"
      if "raw_low" in stats and "raw_high" in stats:
        axis.fill_between(
          run.steps, stats["raw_low"], stats["raw_high"], color=color, alpha=0.2, lw=0
        )
      axis.plot(run.steps, stats["raw"], "o-", ms=3, color=color, label=run.label)
    ceilings = {run.ceilings[benchmark] for run in runs if benchmark in run.ceilings}
    for ceiling in sorted(ceilings):
      axis.axhline(ceiling, color="k", ls="--", lw=1, label="ceiling")
    axis.set_title(layer, fontsize=10)
    axis.set_xlabel("step", fontsize=9)
    axis.tick_params(labelsize=8)
    axis.grid(alpha=0.3)
  for axis in axes[: len(layers) : n_cols]:
    axis.set_ylabel("held-out raw r", fontsize=9)
  for axis in axes[len(layers) :]:
    axis.set_visible(False)
  handles, names = axes[0].get_legend_handles_labels()
  unique = dict(zip(names, handles, strict=True))
  names, handles = list(unique), list(unique.values())
  ncols = max(1, min(len(names), 2 * n_cols))
  figure.legend(handles, names, loc="outside lower center", ncols=ncols, fontsize=9)
  figure.suptitle(f"training runs on {benchmark} (band: 95% interval)", fontsize=11)
  return figure
