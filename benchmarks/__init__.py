"""Benchmarks by name.

Each entry of ``BENCHMARKS`` builds a ``jaxscore.benchmark.NeuralBenchmark``
(loading its data on first use); ``load_benchmark`` looks one up.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from benchmarks import cowley2023
from jaxscore.benchmark import NeuralBenchmark

BENCHMARKS: dict[str, Callable[[], NeuralBenchmark]] = {
  "cowley2023.V4-pls": functools.partial(cowley2023.trials, "pls"),
  "cowley2023.V4-ridge": functools.partial(cowley2023.trials, "ridge"),
  **{
    f"cowley2023.V4.{session}-{regression}": functools.partial(
      cowley2023.averaged, session, regression
    )
    for session in cowley2023.AVERAGED_SESSIONS
    for regression in ("pls", "ridge")
  },
}


def load_benchmark(name: str) -> NeuralBenchmark:
  """Builds the benchmark called ``name``; see ``BENCHMARKS`` for names."""
  if name not in BENCHMARKS:
    raise ValueError(
      f"Unknown benchmark {name!r}; valid benchmarks are: {', '.join(BENCHMARKS)}."
    )
  return BENCHMARKS[name]()
