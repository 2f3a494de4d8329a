"""The scoring callback compiles when built and never again."""

import jax
import numpy as np
import pytest

import benchmarks
import models
from jaxscore import training


@pytest.fixture(scope="module")
def benchmark():
  return benchmarks.load_benchmark("cowley2023.V4-ridge")


def _held_out(benchmark, per_object=10):
  labels = np.asarray(benchmark.labels)
  rows = np.concatenate(
    [np.flatnonzero(labels == label)[:per_object] for label in np.unique(labels)]
  )
  return [benchmark.stimulus_ids[i] for i in rows]


@pytest.mark.slow
def test_many_runs_compile_nothing_new(benchmark, jax_events):
  model = models.load_model("tiny_cnn", key=jax.random.key(0))
  with jax_events() as events:
    callback = training.ScoreCallback(
      benchmark, model, stimulus_ids=_held_out(benchmark), n_boot=20
    )
  assert events.compiles > 0  # the recorder sees the build's compiles
  assert callback.n_traces == 1
  variants = [
    models.load_model("tiny_cnn", key=jax.random.key(seed)).variables
    for seed in range(1, 5)
  ]
  with jax_events() as events:
    values = [dict(callback.run(variables)) for variables in variants]
    for _ in range(4):
      dict(callback.run(model.variables))
  assert events.traces == 0, f"{events.traces} new traces"
  assert events.compiles == 0, f"{events.compiles} new compilations"
  assert callback.n_traces == 1
  name = f"score/{benchmark.identifier}/pool/raw"
  assert len({v[name] for v in values}) == len(values)  # the parameters matter
  assert set(values[0]) >= {
    f"score/{benchmark.identifier}/ceiling",
    f"score/{benchmark.identifier}/conv3/raw_low",
    f"score/{benchmark.identifier}/conv3/ceiled",
  }


def test_bad_layers_are_refused_with_the_valid_ones(benchmark):
  model = models.load_model("tiny_cnn", key=jax.random.key(0))
  with pytest.raises(ValueError, match=r"layers must be .* conv1, conv2"):
    training.ScoreCallback(benchmark, model, layers=["fc7"])
