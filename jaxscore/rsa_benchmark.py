"""Representational-similarity benchmarks: a model's RDMs against brain RDMs.

``RSABenchmark`` holds one or more target RDMs of the same stimuli (one per
subject, or a single group RDM) and the stimuli themselves. It scores a model
(``score_model``) or features computed anywhere else (``score_features``).

Score of one layer:
  1. The layer's RDM is built with the metric the brain RDMs were built with
     (``rdm_metric``, 1 - Pearson r by default).
  2. It is compared with every target RDM: ``"rsa"`` correlates the upper
     triangles (Spearman by default, or Kendall tau-a, or Pearson);
     ``"cka"`` is linear CKA of the Gram matrices the RDMs imply (below).
  3. raw = the mean over subjects of those similarities. This, not the
     similarity with the group-mean RDM, is what the ceiling bounds (Nili et
     al. 2014); the group-mean similarity is reported beside it as ``group``.
     With one target RDM, raw is the similarity with it.

Ceiling (two or more subjects; Nili et al. 2014), with the same comparison:
  upper = mean over subjects s of sim(RDM_s, mean of all subjects' RDMs);
  lower = mean over subjects s of sim(RDM_s, mean of the other subjects').
  The upper bound overfits (each subject is part of its own reference), the
  lower one underfits (the reference lacks the subject); the expected score
  of the true model lies between them. The ceiled score is raw / upper by
  default (``ceiling_bound``), as Brain-Score's inter-subject RSA ceiling
  does. It is never squared (raw is a correlation, not an explained
  variance) and never clipped: a ceiled score above 1 is reported as is.
  With one target RDM there is no ceiling and only raw is reported.

Error: the jackknife over stimuli. Leaving out stimulus k drops its row and
column from every RDM; with the n leave-one-out scores t_k (each the mean
over subjects), error = sqrt((n - 1) / n * sum_k (t_k - mean t)^2). A
leave-one-out resample never holds a stimulus twice, so the zero-distance
same-stimulus pairs that bias a bootstrap over stimuli cannot appear.

CKA on RDM-only data: brain responses are not available, only RDMs, so CKA
uses the Gram matrices the RDMs imply (``kernels.gram_from_rdm``). For
correlation-distance RDMs (the default, and both 92-image brain RDMs) that
Gram is the stimulus-by-stimulus pattern correlation matrix 1 - D, so the
score is linear CKA between the model's and the brain's patterns after each
stimulus's pattern is centred and scaled to unit norm across units; for
Euclidean RDMs (``rdm_metric="euclidean"``) it is plain linear CKA of the
features (classical scaling, -D^2/2). The unbiased estimator is the default
(Brain-Score's since 2026).

References:
  Nili, H., Wingfield, C., Walther, A., Su, L., Marslen-Wilson, W. &
    Kriegeskorte, N. (2014). A toolbox for representational similarity
    analysis. PLoS Comput. Biol. 10(4):e1003553.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from jaxscore import activations, kernels, scoring
from jaxscore.data.stimuli import StimulusSet
from jaxscore.features import align_features
from jaxscore.kernels import rsa as rsa_kernels  # the module
from jaxscore.model import VisionModel

METRICS = ("rsa", "cka")
CEILING_BOUNDS = ("upper", "lower")
# Elements of leave-one-out RDM copies held at once by the jackknife.
JACKKNIFE_BUDGET = 1 << 25
RDM_TOLERANCE = 1e-6  # symmetry and zero diagonal, relative to the largest entry


@dataclasses.dataclass(frozen=True)
class RSACeiling:
  """Inter-subject noise ceiling of an RDM benchmark (Nili et al. 2014).

  Attributes:
    lower: mean over subjects of sim(subject, mean of the other subjects).
    upper: mean over subjects of sim(subject, mean of all subjects).
    lower_per_subject: (n_subjects,) the terms of ``lower``.
    upper_per_subject: (n_subjects,) the terms of ``upper``.
    bound: which bound the ceiled score divides by, ``"upper"`` or ``"lower"``.
  """

  lower: float
  upper: float
  lower_per_subject: np.ndarray
  upper_per_subject: np.ndarray
  bound: str = "upper"

  @property
  def center(self) -> float:
    """The bound the raw score is normalised by."""
    return self.upper if self.bound == "upper" else self.lower


@dataclasses.dataclass(frozen=True)
class RSALayerScore:
  """One layer's score on one RDM benchmark.

  Attributes:
    layer: layer name.
    n_features: features of the layer.
    raw: mean over subjects of the similarity with each subject's RDM.
    error: jackknife standard error of ``raw`` over stimuli (NaN when the
      benchmark's ``jackknife`` is off).
    per_subject: (n_subjects,) the similarity with each target RDM.
    group: the similarity with the mean of the target RDMs.
    ceiled: raw / ceiling (not squared, not clipped); None without ceiling.
  """

  layer: str
  n_features: int
  raw: float
  error: float
  per_subject: np.ndarray
  group: float
  ceiled: float | None


@dataclasses.dataclass(frozen=True)
class RSABenchmarkScore:
  """Every scored layer of one model (or feature set) on one RDM benchmark."""

  benchmark: str
  version: int
  metric: str  # e.g. "rsa-spearman", "cka-unbiased"
  rdm_metric: str
  ceiling: RSACeiling | None
  layers: tuple[RSALayerScore, ...]
  subjects: tuple[str, ...]
  notes: tuple[str, ...] = ()

  @property
  def best(self) -> RSALayerScore:
    """The layer with the highest raw score (the ceiling is the same for all)."""
    return max(self.layers, key=lambda s: s.raw)


def _compare(a, b, *, metric, rsa_method, unbiased, rdm_metric):
  """Similarity of two (n, n) RDMs: a scalar."""
  if metric == "rsa":
    return rsa_kernels.rsa(a, b, method=rsa_method)
  K = rsa_kernels.gram_from_rdm(a, metric=rdm_metric)
  L = rsa_kernels.gram_from_rdm(b, metric=rdm_metric)
  return rsa_kernels.gram_cka(K, L, unbiased=unbiased)


_STATIC = ("metric", "rsa_method", "unbiased", "rdm_metric")


@functools.partial(jax.jit, static_argnames=_STATIC)
def _per_target(model_rdm, targets, **config):
  """(n, n) and (n_targets, n, n) -> (n_targets,) similarities."""
  return jax.vmap(lambda t: _compare(model_rdm, t, **config))(targets)


@functools.partial(jax.jit, static_argnames=_STATIC)
def _ceiling_terms(targets, **config):
  """(n_subjects, n, n) -> upper and lower terms, (n_subjects,) each."""
  n_subjects = targets.shape[0]
  total = jnp.sum(targets, axis=0)  # (n, n)
  others = (total[None] - targets) / (n_subjects - 1)  # (n_subjects, n, n)
  compare = jax.vmap(functools.partial(_compare, **config))
  upper = compare(targets, jnp.broadcast_to(total / n_subjects, targets.shape))
  return upper, compare(targets, others)


@functools.partial(jax.jit, static_argnames=(*_STATIC, "batch_size"))
def _leave_one_out(model_rdm, targets, *, batch_size, **config):
  """(n_stimuli,) mean-over-targets scores with each stimulus left out."""
  n = model_rdm.shape[0]

  def without(k):
    keep = jnp.arange(n - 1)
    keep = keep + (keep >= k)  # every index but k, (n - 1,)
    model = model_rdm[keep][:, keep]
    kept = targets[:, keep][:, :, keep]  # (n_targets, n - 1, n - 1)
    return jnp.mean(_per_target(model, kept, **config))

  return jax.lax.map(without, jnp.arange(n), batch_size=batch_size)


@dataclasses.dataclass(eq=False)
class RSABenchmark:
  """Scores features against brain RDMs (see the module notes).

  Attributes:
    identifier: name in the benchmark table.
    version: bumped whenever data, metric or defaults change the numbers.
    rdms: (n_subjects, n_stimuli, n_stimuli) target RDMs, one per subject, or
      one (n_stimuli, n_stimuli) RDM; symmetric, zero diagonal, finite.
    stimulus_ids: (n_stimuli,) ids of the RDMs' rows, in order.
    stimuli: the stimulus set, holding every id of ``stimulus_ids``.
    visual_degrees: visual angle the stimuli spanned in the experiment.
    subjects: (n_subjects,) names of the target RDMs; default ``rdm0``, ...
    rdm_metric: how the target RDMs were built, ``"correlation"`` (1 -
      Pearson r) or ``"euclidean"``; model RDMs are built the same way.
    metric: ``"rsa"`` or ``"cka"``.
    rsa_method: ``"spearman"``, ``"kendall_tau_a"`` or ``"pearson"``.
    cka_unbiased: unbiased (default) or biased linear CKA.
    ceiling_bound: ``"upper"`` (default) or ``"lower"``: the ceiling bound
      that normalises the raw score.
    jackknife: whether to compute the jackknife error over stimuli.
  """

  identifier: str
  version: int
  rdms: np.ndarray
  stimulus_ids: tuple[str, ...]
  stimuli: StimulusSet
  visual_degrees: float
  subjects: tuple[str, ...] | None = None
  rdm_metric: str = "correlation"
  metric: str = "rsa"
  rsa_method: str = "spearman"
  cka_unbiased: bool = True
  ceiling_bound: str = "upper"
  jackknife: bool = True

  def __post_init__(self):
    for name, value, valid in (
      ("metric", self.metric, METRICS),
      ("rsa_method", self.rsa_method, rsa_kernels.RSA_METHODS),
      ("rdm_metric", self.rdm_metric, rsa_kernels.RDM_METRICS),
      ("ceiling_bound", self.ceiling_bound, CEILING_BOUNDS),
    ):
      if value not in valid:
        raise ValueError(
          f"{name} of {self.identifier} must be one of "
          f"{', '.join(map(repr, valid))}, got {value!r}."
        )
    self.stimulus_ids = tuple(self.stimulus_ids)
    self.rdms = self._validated_rdms(np.asarray(self.rdms, np.float64))
    n_subjects = self.rdms.shape[0]
    if self.subjects is None:
      self.subjects = tuple(f"rdm{i}" for i in range(n_subjects))
    self.subjects = tuple(self.subjects)
    if len(self.subjects) != n_subjects:
      raise ValueError(
        f"subjects of {self.identifier} names {len(self.subjects)} RDMs, but "
        f"rdms holds {n_subjects}."
      )
    if len(set(self.stimulus_ids)) != len(self.stimulus_ids):
      raise ValueError(f"stimulus_ids of {self.identifier} has duplicates.")
    missing = set(self.stimulus_ids) - set(self.stimuli.stimulus_ids)
    if missing:
      raise ValueError(
        f"{len(missing)} stimulus ids of {self.identifier} have no image, "
        f"e.g. {sorted(missing)[:3]}."
      )
    minimum = 4 if self.metric == "cka" and self.cka_unbiased else 3
    if self.n_stimuli < minimum:
      raise ValueError(
        f"{self.identifier} has {self.n_stimuli} stimuli; its metric needs at "
        f"least {minimum}."
      )

  def _validated_rdms(self, rdms: np.ndarray) -> np.ndarray:
    if rdms.ndim == 2:
      rdms = rdms[None]
    n = len(self.stimulus_ids)
    if rdms.ndim != 3 or rdms.shape[1:] != (n, n) or rdms.shape[0] < 1:
      raise ValueError(
        f"rdms of {self.identifier} must be (n_subjects, {n}, {n}) or ({n}, {n}) "
        f"for its {n} stimulus_ids, got shape {rdms.shape}."
      )
    if not np.isfinite(rdms).all():
      raise ValueError(f"rdms of {self.identifier} hold NaN or infinite values.")
    tolerance = RDM_TOLERANCE * max(float(np.abs(rdms).max()), 1e-30)
    asymmetry = np.abs(rdms - rdms.transpose(0, 2, 1)).max(axis=(1, 2))
    diagonal = np.abs(np.diagonal(rdms, axis1=1, axis2=2)).max(axis=1)
    for what, values in (
      ("not symmetric", asymmetry),
      ("a non-zero diagonal", diagonal),
    ):
      bad = np.nonzero(values > tolerance)[0]
      if len(bad):
        raise ValueError(
          f"RDM {int(bad[0])} of {self.identifier} has {what} (up to "
          f"{values[bad[0]]:.3g}); an RDM must be symmetric with zeros on its "
          "diagonal."
        )
    return rdms

  @property
  def n_stimuli(self) -> int:
    return len(self.stimulus_ids)

  @property
  def metric_name(self) -> str:
    """E.g. ``"rsa-spearman"`` or ``"cka-unbiased"``."""
    if self.metric == "rsa":
      return f"rsa-{self.rsa_method}"
    return f"cka-{'unbiased' if self.cka_unbiased else 'biased'}"

  def _config(self) -> dict:
    return dict(
      metric=self.metric,
      rsa_method=self.rsa_method,
      unbiased=self.cka_unbiased,
      rdm_metric=self.rdm_metric,
    )

  @functools.cached_property
  def ceiling(self) -> RSACeiling | None:
    """Nili et al. bounds over the subjects' RDMs; None with one RDM.

    Computed in float64 when 64-bit JAX is on, else in float32.
    """
    if self.rdms.shape[0] < 2:
      return None
    dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    upper, lower = _ceiling_terms(jnp.asarray(self.rdms, dtype), **self._config())
    upper, lower = np.asarray(upper, np.float64), np.asarray(lower, np.float64)
    if not (np.isfinite(upper).all() and np.isfinite(lower).all()):
      raise ValueError(
        f"The ceiling of {self.identifier} is not finite: a subject RDM is "
        "constant over its pairs."
      )
    return RSACeiling(
      lower=float(lower.mean()),
      upper=float(upper.mean()),
      lower_per_subject=lower,
      upper_per_subject=upper,
      bound=self.ceiling_bound,
    )

  def score_model(
    self,
    model: VisionModel,
    *,
    layers: Sequence[str] | None = None,
    batch_size: int = 32,
    dtype=jnp.float32,
    progress: Callable[[int], None] | None = None,
    on_layer: Callable[[RSALayerScore], None] | None = None,
  ) -> RSABenchmarkScore:
    """Runs the model on the stimuli and scores each layer."""
    images = self.stimuli.subset(self.stimulus_ids).images
    features = activations.extract(
      model,
      images,
      source_degrees=self.visual_degrees,
      layers=layers,
      batch_size=batch_size,
      progress=progress,
    )
    return self.score_features(
      features, stimulus_ids=self.stimulus_ids, dtype=dtype, on_layer=on_layer
    )

  def score_features(
    self,
    features: Mapping[str, np.ndarray | xr.DataArray] | np.ndarray | xr.DataArray,
    *,
    stimulus_ids: Sequence[str] | None = None,
    dtype=jnp.float32,
    on_layer: Callable[[RSALayerScore], None] | None = None,
  ) -> RSABenchmarkScore:
    """Scores precomputed features.

    Args:
      features: one array, or ``{layer: array}``. Each array is
        ``(n_stimuli, ...)`` (flattened per stimulus), or a DataArray whose
        first dim carries a ``stimulus_id`` coordinate.
      stimulus_ids: (n_rows,) ids of the rows of plain arrays, in any order;
        required for plain arrays (see ``jaxscore.features``).
      dtype: compute dtype, float32 or float64 (64-bit JAX).
      on_layer: called with each layer's score as soon as it is computed.
    """
    dtype = scoring.resolve_dtype(dtype)
    if not isinstance(features, Mapping):
      features = {"features": features}
    if not features:
      raise ValueError("features is empty; pass at least one layer.")
    # Every layer is checked before any is scored, so bad input fails fast.
    aligned_layers = {
      layer: align_features(
        values,
        target_ids=self.stimulus_ids,
        stimulus_ids=stimulus_ids,
        layer=layer,
        identifier=self.identifier,
      )
      for layer, values in features.items()
    }
    targets = jnp.asarray(self.rdms, dtype)  # (n_subjects, n, n)
    group = jnp.mean(targets, axis=0, keepdims=True)  # (1, n, n)
    ceiling = self.ceiling
    scores = []
    for layer, aligned in aligned_layers.items():
      model_rdm = self._model_rdm(aligned, layer, dtype)
      per_subject = np.asarray(
        _per_target(model_rdm, targets, **self._config()), np.float64
      )
      raw = float(per_subject.mean())
      if not np.isfinite(raw):
        raise ValueError(
          f"Layer {layer!r} scores NaN on {self.identifier}: its RDM is "
          "constant over the stimulus pairs, so it has no similarity to any "
          "brain RDM."
        )
      scores.append(
        RSALayerScore(
          layer=layer,
          n_features=aligned.shape[1],
          raw=raw,
          error=self._jackknife_error(model_rdm, targets),
          per_subject=per_subject,
          group=float(_per_target(model_rdm, group, **self._config())[0]),
          ceiled=None if ceiling is None else raw / ceiling.center,
        )
      )
      if on_layer is not None:
        on_layer(scores[-1])
    return RSABenchmarkScore(
      benchmark=self.identifier,
      version=self.version,
      metric=self.metric_name,
      rdm_metric=self.rdm_metric,
      ceiling=ceiling,
      layers=tuple(scores),
      subjects=self.subjects,
      notes=tuple(self._notes()),
    )

  def _model_rdm(self, aligned: np.ndarray, layer: str, dtype) -> jax.Array:
    """The layer's (n, n) RDM; a stimulus with a constant pattern is an error."""
    model_rdm = kernels.rdm(jnp.asarray(aligned, dtype), metric=self.rdm_metric)
    undefined = np.isnan(np.asarray(model_rdm))  # (n, n)
    if undefined.any():
      # A constant pattern makes its stimulus's row and column NaN (diagonal
      # 0), so NaN runs through every row: the constant stimuli are those
      # whose whole row is NaN off the diagonal.
      np.fill_diagonal(undefined, True)
      constant = undefined.all(axis=1)
      ids = [s for s, bad in zip(self.stimulus_ids, constant, strict=True) if bad]
      which = (
        f"{len(ids)} stimuli, e.g. {ids[:3]}"
        if not constant.all()  # else at most one pattern varies: no row is known
        else f"all, or all but one, of its {len(ids)} stimuli"
      )
      raise ValueError(
        f"Layer {layer!r} responds with a constant pattern to {which}, so its "
        "correlation-distance RDM is undefined there. Drop the layer or use "
        "rdm_metric='euclidean'."
      )
    return model_rdm

  def _jackknife_error(self, model_rdm: jax.Array, targets: jax.Array) -> float:
    if not self.jackknife:
      return float("nan")
    n, n_targets = self.n_stimuli, targets.shape[0]
    if self.metric == "rsa" and self.rsa_method == "kendall_tau_a":
      batch_size = 1  # the Kendall kernel holds its own blocks of pairs
    else:
      batch_size = max(1, min(n, JACKKNIFE_BUDGET // (4 * (n_targets + 1) * n * n)))
    loo = np.asarray(
      _leave_one_out(model_rdm, targets, batch_size=batch_size, **self._config()),
      np.float64,
    )
    return float(np.sqrt((n - 1) / n * np.sum((loo - loo.mean()) ** 2)))

  def _notes(self) -> list[str]:
    notes = []
    if self.ceiling is None:
      notes.append(
        "No ceiling: there is one target RDM, so only raw scores are reported."
      )
    else:
      notes.append(
        f"raw = mean over {len(self.subjects)} subjects of {self.metric_name} "
        f"with each subject's RDM; ceiling = Nili et al. 2014 bounds (lower: "
        "each subject vs the mean of the others; upper: vs the mean of all); "
        f"ceiled = raw / {self.ceiling_bound} bound, not squared, not clipped."
      )
    if self.metric == "cka":
      notes.append(
        f"CKA from RDM-implied Grams ({self.rdm_metric} RDMs): "
        + (
          "linear CKA of patterns centred and normalised per stimulus."
          if self.rdm_metric == "correlation"
          else "linear CKA of the features."
        )
      )
    return notes
