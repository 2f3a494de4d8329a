"""A neural benchmark: recordings, stimuli and a metric, scored per layer.

``NeuralBenchmark`` holds an assembly of single trials (or of averages, when
that is all the data has), the stimuli shown, the regression and the split
settings. It scores either a model (``score_model``) or features computed
anywhere else (``score_features``: arrays or DataArrays of stimuli x
features, e.g. from PyTorch), and can take its splits from outside.
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
from jaxscore.data import assembly as assembly_lib
from jaxscore.data.stimuli import StimulusSet
from jaxscore.features import align_features
from jaxscore.kernels import normalize
from jaxscore.model import VisionModel


@dataclasses.dataclass(frozen=True)
class LayerScore:
  """One layer's score on one benchmark."""

  layer: str
  n_features: int
  raw: scoring.Summary
  r: np.ndarray  # (n_splits, n_neuroids)
  ceiled: float | None  # None when the benchmark has no ceiling
  n_components: int  # PLS components used; 0 for ridge
  alpha: np.ndarray | None = None  # (n_splits, n_neuroids) ridge penalties
  # (n_splits, n_test, n_neuroids) held-out predictions, for the bootstrap
  predictions: np.ndarray | None = None


# Fewest stimuli with trials in both halves of every halving for a
# split-half correlation to count as a ceiling.
MIN_CEILING_STIMULI = 10


@dataclasses.dataclass(frozen=True)
class Ceiling:
  """Split-half reliability of the recordings."""

  summary: scoring.Summary
  values: np.ndarray  # (n_splits, n_neuroids)


@dataclasses.dataclass(frozen=True)
class BenchmarkScore:
  """Every scored layer of one model (or feature set) on one benchmark."""

  benchmark: str
  version: int
  normalization: str
  ceiling: Ceiling | None
  layers: tuple[LayerScore, ...]
  neuroid_ids: tuple[str, ...]
  notes: tuple[str, ...] = ()
  splits: kernels.Splits | None = None  # the splits every layer was fit on

  @property
  def best(self) -> LayerScore:
    """The layer with the highest raw score.

    Every layer shares one ceiling, so for positive r this is the layer with
    the highest ceiled score too; but ``r^2/c`` drops the sign of r, and a
    layer that anticorrelates with the neurons must never come out best.
    """
    return max(self.layers, key=lambda s: s.raw.center)


@dataclasses.dataclass(eq=False)
class NeuralBenchmark:
  """Scores features against recordings by cross-validated regression.

  Attributes:
    identifier: name in the benchmark table.
    version: bumped whenever data, metric or defaults change the numbers.
    assembly: (n_presentations, n_neuroids) trials, see
      ``jaxscore.data.assembly``.
    stimuli: the stimulus set, holding every ``stimulus_id`` of the assembly.
    visual_degrees: visual angle the stimuli spanned in the experiment.
    regression: the map from features to neuroids.
    has_ceiling: whether the assembly has repetitions to estimate a ceiling.
    stratify_by: presentation coord to stratify splits by, or None.
    n_splits, train_size: Monte-Carlo cross-validation settings.
    normalization: ``"r2_over_c"`` (current Brain-Score) or
      ``"squared_ratio"`` (legacy ``(r/c)^2``).
    seed: seed of the split and ceiling keys.
  """

  identifier: str
  version: int
  assembly: xr.DataArray
  stimuli: StimulusSet
  visual_degrees: float
  regression: scoring.Regression = dataclasses.field(default_factory=scoring.Regression)
  has_ceiling: bool = True
  stratify_by: str | None = "object_name"
  n_splits: int = 10
  train_size: float = 0.9
  normalization: str = "r2_over_c"
  seed: int = 0

  def __post_init__(self):
    assembly_lib.validate_assembly(self.assembly, f"assembly of {self.identifier}")
    normalize.get_normalization(self.normalization)
    averaged = assembly_lib.average_repetitions(self.assembly)
    self.stimulus_ids = tuple(averaged["stimulus_id"].values.tolist())
    missing = set(self.stimulus_ids) - set(self.stimuli.stimulus_ids)
    if missing:
      raise ValueError(
        f"{len(missing)} stimulus ids of {self.identifier} have no image, "
        f"e.g. {sorted(missing)[:3]}."
      )
    constant = averaged.values.std(axis=0) == 0
    if constant.any():
      ids = averaged["neuroid_id"].values[constant].tolist()
      raise ValueError(
        f"{len(ids)} neuroids of {self.identifier} respond identically to "
        f"every stimulus, so no correlation with them exists: {ids[:5]}. "
        "Drop them from the assembly."
      )
    self.targets = averaged.values
    self.neuroid_ids = tuple(averaged["neuroid_id"].values.tolist())
    if self.stratify_by is not None:
      assembly_lib.require_presentation_coord(
        self.assembly, self.stratify_by, argument="stratify_by", name=self.identifier
      )
    self.labels = (
      None if self.stratify_by is None else averaged[self.stratify_by].values
    )

  @property
  def n_stimuli(self) -> int:
    return len(self.stimulus_ids)

  def splits(self) -> kernels.Splits:
    """The benchmark's own cross-validation splits (fixed by ``seed``)."""
    key = jax.random.fold_in(jax.random.key(self.seed), 0)
    if self.labels is None:
      return kernels.shuffle_splits(
        self.n_stimuli, n_splits=self.n_splits, train_size=self.train_size, key=key
      )
    return kernels.stratified_shuffle_splits(
      self.labels, n_splits=self.n_splits, train_size=self.train_size, key=key
    )

  def ceiling_masks(self) -> jax.Array:
    """(n_splits, n_reps) halvings of the repetition slots (fixed by seed)."""
    n_reps = len(np.unique(self.assembly["repetition"].values))
    if n_reps < 2:
      raise ValueError(
        f"{self.identifier} has one repetition per stimulus; a split-half "
        "ceiling needs at least two. Set has_ceiling=False."
      )
    key = jax.random.fold_in(jax.random.key(self.seed), 1)
    return kernels.split_half_masks(n_reps, n_splits=self.n_splits, key=key)

  @functools.cached_property
  def ceiling(self) -> Ceiling | None:
    if not self.has_ceiling:
      return None
    trials = assembly_lib.repetition_array(self.assembly)
    masks = self.ceiling_masks()
    values = scoring.split_half_ceiling(trials, masks)
    summary = scoring.Summary.from_values(values)
    in_both = _stimuli_in_both_halves(trials, masks)
    if in_both < MIN_CEILING_STIMULI or not (
      np.isfinite(summary.center) and summary.center > 0
    ):
      raise ValueError(
        f"The split-half ceiling of {self.identifier} would be "
        f"{summary.center:.4g}, which is no reliability estimate: only "
        f"{in_both} stimuli have trials in both halves of the repetitions in "
        f"some halving (at least {MIN_CEILING_STIMULI} are needed, and a "
        "positive ceiling). Score repetition-averaged responses instead, "
        "without a ceiling (has_ceiling=False; from the command line, pass a "
        "neurons x images array)."
      )
    return Ceiling(summary, values)

  def score_model(
    self,
    model: VisionModel,
    *,
    layers: Sequence[str] | None = None,
    batch_size: int = 32,
    dtype=jnp.float32,
    progress: Callable[[int], None] | None = None,
    on_layer: Callable[[LayerScore], None] | None = None,
  ) -> BenchmarkScore:
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
    splits: kernels.Splits | Sequence | None = None,
    dtype=jnp.float32,
    on_layer: Callable[[LayerScore], None] | None = None,
  ) -> BenchmarkScore:
    """Scores precomputed features.

    Args:
      features: one array, or ``{layer: array}``. Each array is
        ``(n_rows, ...)`` (flattened per row), or a DataArray whose first dim
        carries a ``stimulus_id`` coordinate.
      stimulus_ids: (n_rows,) ids of the rows of plain arrays, in any order;
        extra stimuli are ignored, missing ones are an error. Required for
        plain arrays: rows are never assumed to be in the benchmark's order
        (pass ``self.stimulus_ids`` if they are).
      splits: train/test indices into ``self.stimulus_ids`` order, as
        ``kernels.Splits`` or as (train, test) pairs (what scikit-learn's
        ``split()`` yields); default the benchmark's own ``splits()``.
      dtype: compute dtype.
      on_layer: called with each layer's score as soon as it is computed.
    """
    if not isinstance(features, Mapping):
      features = {"features": features}
    if not features:
      raise ValueError("features is empty; pass at least one layer.")
    splits = self._resolve_splits(splits)
    dtype = scoring.resolve_dtype(dtype)
    # Every layer is checked before any is scored, so bad input fails fast.
    aligned_layers = {
      layer: self.align(values, stimulus_ids=stimulus_ids, layer=layer)
      for layer, values in features.items()
    }
    ceiling = self.ceiling  # refused here, if it must be, before any fit
    notes = []
    scores = []
    constant = {
      layer: _check_representable(aligned, dtype, layer)
      for layer, aligned in aligned_layers.items()
    }
    varies = np.ptp(self.targets[np.asarray(splits.test)], axis=1) > 0
    for layer, aligned in aligned_layers.items():
      fitted = scoring.cross_validated_r(
        aligned, self.targets, splits, self.regression, dtype=dtype
      )
      r, alpha, n_components = fitted.r, fitted.alpha, fitted.n_components
      if np.any(np.isnan(r) & varies):
        raise ValueError(
          f"The fit to layer {layer!r} produced non-finite predictions in "
          f"{dtype.name}; its features span a range this precision cannot "
          "handle. Rescale them or score with dtype=float64."
        )
      if 0 < n_components < self.regression.n_components:
        notes.append(
          f"layer {layer!r} has {aligned.shape[1]} features: PLS used "
          f"{n_components} components instead of {self.regression.n_components}."
        )
      if alpha is not None:
        notes.extend(_edge_alpha_notes(layer, alpha, self.regression.alphas))
      if constant[layer]:
        notes.append(
          f"layer {layer!r} is constant over every stimulus: its predictions "
          "are constant, and a constant prediction scores r = 0; the layer "
          "carries no information about the stimuli."
        )
      raw = scoring.Summary.from_values(r)
      if self.has_ceiling and raw.center < 0:
        notes.append(
          f"layer {layer!r} anticorrelates with the neuroids (raw r "
          f"{raw.center:.3f}); its ceiled score r^2/c drops the sign."
        )
      scores.append(
        LayerScore(
          layer=layer,
          n_features=aligned.shape[1],
          raw=raw,
          r=r,
          ceiled=self._ceil(raw.center),
          n_components=n_components,
          alpha=alpha,
          predictions=fitted.predictions,
        )
      )
      if scores[-1].ceiled is not None and scores[-1].ceiled > 1:
        notes.append(
          f"layer {layer!r} scores above its ceiling (ceiled "
          f"{scores[-1].ceiled:.3f} > 1): the ceiling underestimates what is "
          "predictable, or the test sets are too small."
        )
      if on_layer is not None:
        on_layer(scores[-1])
    if not self.has_ceiling:
      notes.append(
        "No ceiling: this recording has no single trials, so only raw scores "
        "are reported."
      )
    return BenchmarkScore(
      benchmark=self.identifier,
      version=self.version,
      normalization=self.normalization,
      ceiling=ceiling,
      layers=tuple(scores),
      neuroid_ids=self.neuroid_ids,
      notes=tuple(notes),
      splits=splits,
    )

  def _resolve_splits(self, splits) -> kernels.Splits:
    if splits is None:
      return self.splits()
    if isinstance(splits, kernels.Splits):
      return kernels.validate_splits(splits.train, splits.test, self.n_stimuli)
    try:
      train, test = zip(*splits, strict=True)
    except (TypeError, ValueError) as e:
      raise TypeError(
        "splits must be a kernels.Splits or a sequence of (train, test) index "
        f"pairs, got {type(splits).__name__}."
      ) from e
    return kernels.validate_splits(train, test, self.n_stimuli)

  def _ceil(self, raw: float) -> float | None:
    if self.ceiling is None:
      return None
    ceiling = self.ceiling.summary.center
    return float(normalize.get_normalization(self.normalization)(raw, ceiling))

  def align(
    self,
    values: np.ndarray | xr.DataArray,
    *,
    stimulus_ids: Sequence[str] | None = None,
    layer: str = "features",
  ) -> np.ndarray:
    """Features as (n_stimuli, n_features) rows in the benchmark's order."""
    return align_features(
      values,
      target_ids=self.stimulus_ids,
      stimulus_ids=stimulus_ids,
      layer=layer,
      identifier=self.identifier,
    )


def _check_representable(values: np.ndarray, dtype, layer: str) -> bool:
  """Refuses features that overflow the compute dtype (they would become inf).

  Returns whether every feature is constant over the stimuli (read from the
  same per-feature extremes, in the same pass over the layer).
  """
  if not values.size:
    return True
  highest, lowest = np.max(values, axis=0), np.min(values, axis=0)  # no |x| copy
  largest = max(float(np.max(highest)), -float(np.min(lowest)))
  limit = float(np.finfo(dtype).max) ** 0.25  # room for Gram products
  if largest > limit:
    raise ValueError(
      f"Features of layer {layer!r} reach {largest:.3g}, beyond what "
      f"{np.dtype(dtype).name} products can hold (about {limit:.3g}); rescale "
      "them or score with dtype=float64."
    )
  floor = float(np.finfo(dtype).tiny) ** 0.5  # products below this underflow
  if 0 < largest < floor:
    raise ValueError(
      f"Features of layer {layer!r} are at most {largest:.3g} in size, so small "
      f"that their products underflow in {np.dtype(dtype).name} (below about "
      f"{floor:.3g}); rescale them or score with dtype=float64."
    )
  return not np.any(highest > lowest)


def _stimuli_in_both_halves(trials: np.ndarray, masks) -> int:
  """Fewest stimuli, over halvings, with a trial in both halves of the reps.

  Args:
    trials: (n_reps, n_stimuli, n_neuroids), NaN where a slot is empty.
    masks: (n_halvings, n_reps) bool, True for the first half.
  """
  present = np.any(~np.isnan(trials), axis=2)  # (n_reps, n_stimuli)
  masks = np.asarray(masks, bool)
  first = (masks[:, :, None] & present[None]).any(axis=1)  # (halvings, stimuli)
  second = (~masks[:, :, None] & present[None]).any(axis=1)
  return int((first & second).sum(axis=1).min())


def _edge_alpha_notes(layer: str, alpha: np.ndarray, grid) -> list[str]:
  """Notes when ridge penalties pile up at an end of the grid."""
  notes = []
  for end, value in (("smallest", min(grid)), ("largest", max(grid))):
    share = float(np.mean(alpha == value))
    if share > 0.25:
      notes.append(
        f"layer {layer!r}: {100 * share:.0f}% of the ridge penalties chosen are "
        f"the {end} of the grid ({value:g}); the best penalty may lie beyond "
        "it (widen the grid or rescale the features)."
      )
  return notes
