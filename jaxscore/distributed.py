"""A sweep's pairs as tasks on a Ray cluster; the driver alone writes the store.

Each (model, benchmark) pair that lacks rows becomes one Ray task. What
travels to the worker is a ``Task``: names and settings, no arrays, plus the
rows the driver's store already holds for the pair. The worker rebuilds the
model by name and seed and refuses to go on unless its parameters hash to
what the driver computed, rebuilds the benchmark by name (its data come from
``$JAXSCORE_MIRROR`` or the download cache, as on the driver), seeds a
private store in a temporary folder with the rows it was sent, runs
``sweep.run_pair`` against it, and returns the rows it added. The driver adds
each task's rows to the real store as the task finishes.

So the store needs no shared filesystem: it lives with the driver, and a
killed sweep loses only the pairs in flight (a rerun sends them again, with
whatever rows of theirs had come back). The activation cache is content
addressed and written atomically: a folder local to each node works (a node
without an entry computes it), and so does a shared one.

``ray`` is an optional extra (``pip install -e ".[ray]"``) and is imported
only by ``require_ray`` and ``run_pairs``: a sweep in one process never
imports it.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import jax

from jaxscore import cache as cache_lib
from jaxscore import store as store_lib
from jaxscore import sweep
from jaxscore.benchmark import NeuralBenchmark
from jaxscore.model import VisionModel
from jaxscore.rsa_benchmark import RSABenchmark

# What workers must see as the driver does: where the recordings are read
# from. Hardware settings (JAX_PLATFORMS, CUDA_VISIBLE_DEVICES) belong to each
# node and are left to the environment its `ray start` ran in.
FORWARDED_ENV = ("JAXSCORE_MIRROR", "JAXSCORE_CACHE")


def require_ray():
  """The ``ray`` module, or an ImportError that says how to install it."""
  try:
    import ray  # an optional extra, imported only when asked for
  except ImportError as e:
    raise ImportError(
      "Sweeping on a Ray cluster needs the ray package, which is not "
      'installed; install the extra with: pip install -e ".[ray]"'
    ) from e
  return ray


@dataclasses.dataclass(frozen=True)
class Task:
  """A ``sweep.Pair`` as a worker rebuilds it: names and settings only.

  ``model_seed`` draws the model's random initialisation
  (``build_model(model_name, key=jax.random.key(model_seed))``); ``seed`` is
  the pair's commitment seed, as in ``sweep.Pair``.
  """

  model_name: str
  model_seed: int
  params_hash: str
  benchmark: str
  benchmark_version: int
  layers: tuple[str, ...]
  commit: bool
  seed: int
  dtype: str
  # the pair's rows the driver's store holds (not part of the task's identity)
  present: tuple[dict, ...] = dataclasses.field(default=(), hash=False, compare=False)

  @classmethod
  def from_pair(
    cls, pair: sweep.Pair, *, model_seed: int, store: store_lib.Store
  ) -> Task:
    return cls(
      model_name=pair.model_name,
      model_seed=model_seed,
      params_hash=pair.params_hash,
      benchmark=pair.benchmark_id,
      benchmark_version=pair.benchmark.version,
      layers=tuple(pair.layers),
      commit=pair.commit,
      seed=pair.seed,
      dtype=pair.dtype,
      present=tuple(pair.stored_rows(store)),
    )

  def pair(self, benchmark: NeuralBenchmark | RSABenchmark) -> sweep.Pair:
    """The pair on ``benchmark``, refused unless it is the one named."""
    found = (benchmark.identifier, benchmark.version)
    if found != (self.benchmark, self.benchmark_version):
      raise ValueError(
        f"The worker built benchmark {found[0]!r} version {found[1]}, but the "
        f"driver scored {self.benchmark!r} version {self.benchmark_version}; "
        "install the same jaxscore on every node."
      )
    return sweep.Pair(
      model_name=self.model_name,
      params_hash=self.params_hash,
      benchmark=benchmark,
      layers=self.layers,
      commit=self.commit,
      seed=self.seed,
      dtype=self.dtype,
    )

  def describe(self) -> str:
    return f"{self.model_name} on {self.benchmark}"


def score_task(
  task: Task,
  *,
  cache_root: str,
  batch_size: int,
  build_model: Callable[..., VisionModel],
  build_benchmark: Callable[[str], NeuralBenchmark | RSABenchmark],
) -> list[dict]:
  """Runs one task where it is called (on a Ray worker); returns its new rows.

  Args:
    task: the pair to score, with the rows already stored.
    cache_root: the activation cache folder, as seen on this node.
    batch_size: images per forward pass.
    build_model: ``build_model(name, key=...)`` builds a model by name, as
      ``models.load_model`` does.
    build_benchmark: ``build_benchmark(name)`` builds a benchmark by name, as
      ``benchmarks.load_benchmark`` does.

  Returns:
    The rows this task computed, as ``Store.find`` returns them.

  Raises:
    ValueError: the rebuilt model's parameters do not hash to
      ``task.params_hash``, or the rebuilt benchmark is not the one named.
  """
  model = build_model(task.model_name, key=jax.random.key(task.model_seed))
  params_hash = store_lib.params_hash(model.variables)
  if params_hash != task.params_hash:
    raise ValueError(
      f"The worker rebuilt {task.model_name!r} with seed {task.model_seed} and "
      f"got parameters hash {params_hash[:12]}, but the driver's is "
      f"{task.params_hash[:12]}: the nodes build different weights. Install "
      "the same code and weight files on every node."
    )
  pair = task.pair(build_benchmark(task.benchmark))
  with (
    tempfile.TemporaryDirectory(prefix="jaxscore-task-") as folder,
    store_lib.Store(Path(folder) / "rows.sqlite") as private,
  ):
    for row in task.present:
      private.add_row(row)
    sweep.run_pair(
      pair,
      model,
      store=private,
      cache=cache_lib.ActivationCache(cache_root),
      batch_size=batch_size,
    )
    return pair.stored_rows(private)[len(task.present) :]


def run_pairs(
  tasks: Sequence[Task],
  *,
  address: str,
  store: store_lib.Store,
  cache_root: str | os.PathLike,
  build_model: Callable[..., VisionModel],
  build_benchmark: Callable[[str], NeuralBenchmark | RSABenchmark],
  batch_size: int = 32,
  num_cpus: float = 1.0,
  on_done: Callable[[Task, int], None] | None = None,
) -> int:
  """Scores ``tasks`` as Ray tasks on the cluster at ``address``.

  Connects to the cluster, submits one task per entry of ``tasks`` (each a
  ``score_task`` call), and waits for them as they finish, in any order.
  Each finished task's rows go into ``store`` at once. The first task to fail
  cancels those not yet finished and is raised again with its pair named; the
  rows of tasks that finished stay, so a rerun computes only what is missing.

  Args:
    tasks: the pairs to score, each with rows missing from the store.
    address: the cluster's address (``host:port`` of its head node).
    store: the driver's store; every row a task returns is added to it.
    cache_root: the activation cache folder (the same path on every node:
      shared, or each node's own).
    build_model: ``build_model(name, key=...)``, e.g. ``models.load_model``;
      it travels by reference and must be importable on the workers.
    build_benchmark: ``build_benchmark(name)``, e.g.
      ``benchmarks.load_benchmark``; likewise.
    batch_size: images per forward pass.
    num_cpus: CPUs Ray reserves for each task.
    on_done: ``on_done(task, written)`` as each task finishes.

  Returns:
    The number of rows written, over all tasks.

  Raises:
    ImportError: ray is not installed.
    RuntimeError: a task failed; its pair is named and the cause chained.
  """
  ray = require_ray()
  if not tasks:
    return 0
  env = {name: os.environ[name] for name in FORWARDED_ENV if name in os.environ}
  ray.init(address=address, runtime_env={"env_vars": env}, logging_level="WARNING")
  try:
    remote = ray.remote(num_cpus=num_cpus)(score_task)
    pending = {
      remote.remote(
        task,
        cache_root=str(Path(cache_root).resolve()),
        batch_size=batch_size,
        build_model=build_model,
        build_benchmark=build_benchmark,
      ): task
      for task in tasks
    }
    written = 0
    while pending:
      (ref,), _ = ray.wait(list(pending), num_returns=1)
      task = pending.pop(ref)
      try:
        rows = ray.get(ref)
      except ray.exceptions.RayError as e:
        for other in pending:
          ray.cancel(other)
        raise RuntimeError(
          f"Scoring {task.describe()} failed on the Ray cluster at {address} "
          f"with {type(e).__name__}; the worker's traceback is above."
        ) from e
      added = sum(store.add_row(row) for row in rows)
      written += added
      if on_done is not None:
        on_done(task, added)
    return written
  finally:
    ray.shutdown()
