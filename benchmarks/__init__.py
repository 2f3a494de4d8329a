"""Benchmarks by name.

Each entry of ``BENCHMARKS`` builds a benchmark (loading its data on first
use): a ``jaxscore.benchmark.NeuralBenchmark`` (regression on recordings) or
a ``jaxscore.rsa_benchmark.RSABenchmark`` (similarity with RDMs).
``load_benchmark`` looks one up.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from benchmarks import cowley2023, kriegeskorte2008
from jaxscore.benchmark import NeuralBenchmark
from jaxscore.rsa_benchmark import RSABenchmark

Benchmark = NeuralBenchmark | RSABenchmark

BENCHMARKS: dict[str, Callable[[], Benchmark]] = {
  "cowley2023.V4-pls": functools.partial(cowley2023.trials, "pls"),
  "cowley2023.V4-ridge": functools.partial(cowley2023.trials, "ridge"),
  **{
    f"cowley2023.V4.{session}-{regression}": functools.partial(
      cowley2023.averaged, session, regression
    )
    for session in cowley2023.AVERAGED_SESSIONS
    for regression in ("pls", "ridge")
  },
  **{
    f"kriegeskorte2008.{region}-{metric}": functools.partial(builder, metric)
    for region, builder in (
      ("hIT", kriegeskorte2008.human_it),
      ("mIT", kriegeskorte2008.monkey_it),
    )
    for metric in ("rsa", "cka")
  },
}


def load_benchmark(name: str) -> Benchmark:
  """Builds the benchmark called ``name``; see ``BENCHMARKS`` for names."""
  if name not in BENCHMARKS:
    raise ValueError(
      f"Unknown benchmark {name!r}; valid benchmarks are: {', '.join(BENCHMARKS)}."
    )
  return BENCHMARKS[name]()
