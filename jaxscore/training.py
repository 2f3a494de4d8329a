"""Scoring inside a training loop: a callback that compiles once.

``ScoreCallback`` is built once, from a ``NeuralBenchmark`` and a model (its
apply function, readout layers and input conventions). Building it
preprocesses the benchmark's images, computes the ceiling (it does not
depend on the model) and compiles everything a score needs, announcing the
compile. ``run(variables)`` then costs one forward pass of the stimuli plus
the cross-validated regression of every layer, all in one compiled
executable, and yields ``(name, value)`` pairs; the trainer decides when to
call it and where the values go.

Per layer, ``run`` yields, under ``score/<benchmark>/<layer>/``:
  ``raw``      mean over splits of the median over neuroids of Pearson r
  ``raw_sem``  its standard error over splits (ddof 0, as Brain-Score)
  ``raw_low``, ``raw_high``  a 95% interval of ``raw``: percentiles of a
               bootstrap of the held-out predictions (``n_boot`` > 0, no
               refit), else ``raw -+ 1.96 raw_sem``
  ``ceiled``   the ceiled score (benchmarks with a ceiling)
and once ``score/<benchmark>/ceiling``.

The forward pass runs in fixed-size batches inside the executable (the last
one padded), and every layer goes through its stimulus Gram matrix, so the
regression costs the same whatever the layer's width.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from jaxscore import activations, kernels, scoring
from jaxscore.benchmark import NeuralBenchmark
from jaxscore.data import assembly as assembly_lib
from jaxscore.kernels import normalize
from jaxscore.model import VisionModel

Z_95 = 1.959963984540054  # two-sided 95% quantile of the standard normal


def _as_variables(variables_or_state):
  """Model variables from a variables dict or a train state with ``.params``."""
  if hasattr(variables_or_state, "params") and not isinstance(variables_or_state, dict):
    return {"params": variables_or_state.params}
  return variables_or_state


class ScoreCallback:
  """Scores a model's layers on a neural benchmark, every time it is called.

  Attributes:
    name: the benchmark's identifier, used in the yielded names.
    layers: readout layers, in order.
    stimulus_ids: the stimuli scored, in order.
    splits: the cross-validation splits, indices into ``stimulus_ids``.
    ceiling: the ceiling summary, or None.
    n_traces: how often the scoring function has been traced (1 after
      building; a retrace would raise it).
  """

  def __init__(
    self,
    benchmark: NeuralBenchmark,
    model: VisionModel,
    *,
    layers: Sequence[str] | None = None,
    stimulus_ids: Sequence[str] | None = None,
    batch_size: int = 64,
    n_boot: int = 200,
    key: jax.Array | None = None,
  ):
    """Preprocesses the stimuli and compiles the scoring function.

    Args:
      benchmark: the benchmark; its regression, split settings, seed and
        normalisation apply.
      model: apply function, input size, normalisation and visual degrees;
        its ``variables`` fix the shapes the callback compiles for (any
        parameters of the same shapes can be scored afterwards).
      layers: readout layers, default ``model.layers``.
      stimulus_ids: score only these stimuli of the benchmark (e.g. ones
        held out of training); default all. Splits are drawn among them,
        stratified as the benchmark stratifies, with the benchmark's seed.
      batch_size: images per forward pass inside the compiled function.
      n_boot: bootstrap resamples of the held-out predictions for the
        interval; 0 uses the split standard error instead.
      key: key of the bootstrap; default ``jax.random.key(benchmark.seed)``.

    Raises:
      ValueError: an unknown layer or stimulus id, or a bad batch size.
    """
    layers = tuple(model.layers if layers is None else layers)
    unknown = [name for name in layers if name not in model.layers]
    if unknown or not layers:
      raise ValueError(
        f"layers must be a non-empty subset of the layers of model "
        f"{model.name!r}, {', '.join(model.layers)}; got {list(layers)}."
      )
    if batch_size < 1:
      raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    if n_boot < 0:
      raise ValueError(f"n_boot must be 0 or positive, got {n_boot}.")
    self.name = benchmark.identifier
    self.layers = layers
    self.stimulus_ids, rows = _resolve_stimuli(benchmark, stimulus_ids)
    self.splits = _subset_splits(benchmark, rows)
    self.ceiling = _subset_ceiling(benchmark, self.stimulus_ids)
    self._normalize = normalize.get_normalization(benchmark.normalization)
    self._n_boot = n_boot
    self._key = jax.random.key(benchmark.seed) if key is None else key
    self.n_traces = 0

    # Preprocess once; the images live on the device as padded batches.
    stimuli = benchmark.stimuli.subset(self.stimulus_ids)
    images = activations.preprocess(
      stimuli.images, model, source_degrees=benchmark.visual_degrees
    )
    n_stimuli = len(images)
    batch_size = min(batch_size, n_stimuli)
    n_batches = -(-n_stimuli // batch_size)
    padded = np.concatenate(
      [images, np.repeat(images[-1:], n_batches * batch_size - n_stimuli, axis=0)]
    )
    self._images = jnp.asarray(padded.reshape(n_batches, batch_size, *images.shape[1:]))
    targets = np.asarray(benchmark.targets, np.float32)[rows]
    self._targets = jnp.asarray(targets)
    test = np.asarray(self.splits.test)
    self._test_targets = jnp.asarray(targets[test])  # (n_splits, n_test, T)

    regression = benchmark.regression
    n_train = self.splits.train.shape[1]
    shapes = jax.eval_shape(
      lambda v, x: model.apply(v, x), model.variables, self._images[0]
    )
    n_components = {
      name: regression.components_for(int(np.prod(shapes[name].shape[1:])), n_train)
      for name in layers
    }
    score = _make_score_fn(
      self, model.apply, layers, n_stimuli, regression, n_components
    )
    logging.info(
      "Compiling the %s scoring of %d layers on %d stimuli (once).",
      self.name,
      len(layers),
      n_stimuli,
    )
    self._score = (
      jax.jit(score)
      .lower(
        model.variables,
        self._images,
        self._targets,
        jnp.asarray(self.splits.train),
        jnp.asarray(self.splits.test),
        jnp.asarray(regression.alphas, jnp.float32),
      )
      .compile()
    )
    self._alphas = jnp.asarray(regression.alphas, jnp.float32)
    # One call compiles the bootstrap too, so later calls compile nothing.
    for _ in self.run(model.variables):
      pass

  def run(self, variables_or_state) -> Iterator[tuple[str, float]]:
    """Scores the model with these parameters.

    Args:
      variables_or_state: the model's variables (as passed to its apply
        function) or a train state with a ``params`` attribute; shapes and
        dtypes as the variables the callback was built with.

    Yields:
      ``(name, value)`` pairs, see the module docstring. A layer whose
      activations are not finite yields NaN values.
    """
    variables = _as_variables(variables_or_state)
    r = self._score(
      variables,
      self._images,
      self._targets,
      jnp.asarray(self.splits.train),
      jnp.asarray(self.splits.test),
      self._alphas,
    )
    prefix = f"score/{self.name}"
    if self.ceiling is not None:
      yield f"{prefix}/ceiling", self.ceiling.center
    for layer in self.layers:
      values, predictions = (np.asarray(a) for a in r[layer])
      summary = scoring.Summary.from_values(values)
      raw = summary.center
      low, high = raw - Z_95 * summary.error, raw + Z_95 * summary.error
      if self._n_boot and np.isfinite(predictions).all():
        samples = kernels.test_set_bootstrap(
          predictions, self._test_targets, n_boot=self._n_boot, key=self._key
        )
        low, high = (float(v) for v in kernels.percentile_interval(samples))
      yield f"{prefix}/{layer}/raw", raw
      yield f"{prefix}/{layer}/raw_sem", summary.error
      yield f"{prefix}/{layer}/raw_low", float(low)
      yield f"{prefix}/{layer}/raw_high", float(high)
      if self.ceiling is not None:
        ceiled = self._normalize(raw, self.ceiling.center)
        yield f"{prefix}/{layer}/ceiled", float(ceiled)


def _resolve_stimuli(benchmark, stimulus_ids):
  """The stimulus ids scored and their rows in the benchmark's order."""
  if stimulus_ids is None:
    return benchmark.stimulus_ids, np.arange(benchmark.n_stimuli)
  stimulus_ids = tuple(stimulus_ids)
  position = {s: i for i, s in enumerate(benchmark.stimulus_ids)}
  missing = [s for s in stimulus_ids if s not in position]
  if missing:
    raise ValueError(
      f"stimulus_ids must be stimuli of {benchmark.identifier}; "
      f"{len(missing)} are not, e.g. {missing[:3]}."
    )
  if len(set(stimulus_ids)) != len(stimulus_ids):
    raise ValueError("stimulus_ids must not repeat a stimulus.")
  return stimulus_ids, np.array([position[s] for s in stimulus_ids])


def _subset_splits(benchmark, rows) -> kernels.Splits:
  """The benchmark's kind of splits, drawn among ``rows``."""
  if len(rows) == benchmark.n_stimuli and np.array_equal(rows, np.arange(len(rows))):
    return benchmark.splits()
  key = jax.random.fold_in(jax.random.key(benchmark.seed), 0)
  settings = dict(n_splits=benchmark.n_splits, train_size=benchmark.train_size, key=key)
  if benchmark.labels is None:
    return kernels.shuffle_splits(len(rows), **settings)
  return kernels.stratified_shuffle_splits(benchmark.labels[rows], **settings)


def _subset_ceiling(benchmark, stimulus_ids) -> scoring.Summary | None:
  """Split-half ceiling over the trials of the scored stimuli only."""
  if not benchmark.has_ceiling:
    return None
  # The benchmark's repetition slots, so that its ceiling masks apply even
  # where the scored stimuli never fill the last slot.
  trials = assembly_lib.repetition_array(benchmark.assembly)  # (n_reps, n_stimuli, T)
  order = assembly_lib.stimulus_order(benchmark.assembly).tolist()
  position = {s: i for i, s in enumerate(order)}
  trials = trials[:, [position[s] for s in stimulus_ids]]
  values = scoring.split_half_ceiling(trials, benchmark.ceiling_masks())
  return scoring.Summary.from_values(values)


def _make_score_fn(callback, apply, layers, n_stimuli, regression, n_components):
  """The function compiled once: forward pass, Gram, one regression per split."""

  def score(variables, images, targets, train, test, alphas):
    callback.n_traces += 1  # runs only while tracing

    def forward(batch):
      outputs = apply(variables, batch)
      return {name: outputs[name].reshape(batch.shape[0], -1) for name in layers}

    features = jax.lax.map(forward, images)  # {layer: (n_batches, batch, p)}
    results = {}
    for name in layers:
      X = features[name].reshape(-1, features[name].shape[-1])[:n_stimuli]
      X = X - jnp.mean(X, axis=0)
      with jax.default_matmul_precision("highest"):
        gram = X @ X.T  # (n_stimuli, n_stimuli)
      results[name] = jax.vmap(
        lambda tr, te, g=gram, k=n_components[name]: _one_split(
          g, targets, tr, te, alphas, regression, k
        )
      )(train, test)
    return results

  return score


def _one_split(gram, targets, tr, te, alphas, regression, n_components):
  """(n_neuroids,) r and (n_test, n_neuroids) predictions of one split."""
  K_train, K_test = kernels.center_gram(gram, tr, te)
  Y_train, Y_test = targets[tr], targets[te]
  if regression.kind == "pls":
    pred = kernels.pls_fit_predict_gram(
      K_train, K_test, Y_train, n_components=n_components
    )
  elif regression.selection == "gcv":
    pred = kernels.ridge_gcv_fit_predict_gram(K_train, K_test, Y_train, alphas)[0]
  else:
    pred = kernels.ridge_fit_predict_gram(K_train, K_test, Y_train, alphas)[0]
  r = kernels.pearson_r(pred, Y_test)
  # As in scoring: a finite prediction constant over the test set scores 0.
  finite = jnp.all(jnp.isfinite(pred), axis=0)
  constant = finite & (jnp.ptp(jnp.where(finite, pred, 0), axis=0) == 0)
  varies = jnp.ptp(Y_test, axis=0) > 0
  r = jnp.where(constant & varies, 0.0, jnp.where(finite, r, jnp.nan))
  return r, pred
