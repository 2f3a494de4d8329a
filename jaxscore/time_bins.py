"""Recordings in time bins, scored bin by bin.

An assembly with a third dim ``time_bin`` (coords ``time_bin_start`` and
``time_bin_end``, in ms, as Brain-Score's files have them) holds one
``presentation x neuroid`` response per bin. ``TimeBinnedBenchmark`` builds
one ``NeuralBenchmark`` per bin, all with the same stimuli, splits and ceiling
halves, and scores each bin on its own: a score and a ceiling per bin. The bin
benchmarks are named ``<identifier>.t<start>-<end>``, e.g.
``freemanziemba2013.V1-pls.t50-100``, so each is written as an ordinary result
(``jaxscore.results.write_time_binned``).

A model without time scores every layer on every bin. A recurrent model whose
time steps are separate layers maps them to bins with ``layer_for_bin``:
``{bin: layer or layers}`` where a bin is its index or its ``"start-end"``
label, e.g. ``{0: "block.t0", 1: "block.t1"}`` (bins are indexed in time
order, however the assembly orders them); ``layers_by_time_step``
builds that mapping from layer names ending in ``.t<k>``. Bins the mapping
leaves out are not scored.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence

import jax.numpy as jnp
import numpy as np
import xarray as xr

from jaxscore import activations, kernels
from jaxscore.benchmark import BenchmarkScore, NeuralBenchmark
from jaxscore.data.stimuli import StimulusSet
from jaxscore.model import VisionModel

_STEP = re.compile(r"\.t(\d+)$")


def bin_labels(assembly: xr.DataArray) -> tuple[str, ...]:
  """``"start-end"`` of each time bin, e.g. ``("70-170",)``."""
  for coord in ("time_bin_start", "time_bin_end"):
    if coord not in assembly.coords or assembly[coord].dims != ("time_bin",):
      raise ValueError(f"assembly needs a {coord!r} coordinate along 'time_bin'.")
  starts = assembly["time_bin_start"].values.tolist()
  ends = assembly["time_bin_end"].values.tolist()
  labels = tuple(f"{s:g}-{e:g}" for s, e in zip(starts, ends, strict=True))
  if len(set(labels)) != len(labels):
    raise ValueError(f"assembly has duplicate time bins: {labels}.")
  return labels


def layers_by_time_step(layers: Sequence[str]) -> dict[int, list[str]]:
  """``{k: [layers named '<...>.t<k>']}``: recurrent time step k to bin k."""
  mapping: dict[int, list[str]] = {}
  for layer in layers:
    match = _STEP.search(layer)
    if match:
      mapping.setdefault(int(match.group(1)), []).append(layer)
  if not mapping:
    raise ValueError(
      f"No layer name ends in '.t<step>' (e.g. 'block.t0'); got {list(layers)}."
    )
  return mapping


@dataclasses.dataclass(frozen=True)
class TimeBinnedScore:
  """One ``BenchmarkScore`` per scored time bin.

  Attributes:
    benchmark: the binned benchmark's identifier (without a bin suffix).
    version: its version.
    bins: (n_bins,) ``"start-end"`` labels of the scored bins, in time order
      (by start, then end; ``TimeBinnedBenchmark`` sorts the file's bins).
    starts, ends: (n_bins,) bin bounds.
    scores: (n_bins,) each bin's score (its ``benchmark`` names the bin).
  """

  benchmark: str
  version: int
  bins: tuple[str, ...]
  starts: tuple[float, ...]
  ends: tuple[float, ...]
  scores: tuple[BenchmarkScore, ...]

  def __getitem__(self, label: str) -> BenchmarkScore:
    if label not in self.bins:
      raise KeyError(f"No time bin {label!r}; scored bins are {', '.join(self.bins)}.")
    return self.scores[self.bins.index(label)]


@dataclasses.dataclass(eq=False)
class TimeBinnedBenchmark:
  """A ``NeuralBenchmark`` per time bin, sharing stimuli, splits and ceiling halves.

  Attributes:
    identifier: name of the binned benchmark.
    version: bumped whenever data, metric or defaults change the numbers.
    assembly: (n_presentations, n_neuroids, n_time_bins) trials with
      ``time_bin_start`` and ``time_bin_end`` on ``time_bin``, in any order
      (the bins are sorted by start, then end: bin ``b`` of ``bins`` and of
      ``layer_for_bin`` is the ``b``-th in time); each bin must be a valid
      assembly (``jaxscore.data.assembly``).
    stimuli: the stimulus set.
    visual_degrees: visual angle the stimuli spanned.
    options: further ``NeuralBenchmark`` arguments for every bin
      (``regression``, ``has_ceiling``, ``stratify_by``, ``n_splits``,
      ``train_size``, ``normalization``, ``seed``).
  """

  identifier: str
  version: int
  assembly: xr.DataArray
  stimuli: StimulusSet
  visual_degrees: float
  options: Mapping = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    dims = ("presentation", "neuroid", "time_bin")
    if not isinstance(self.assembly, xr.DataArray) or set(self.assembly.dims) != set(
      dims
    ):
      got = getattr(self.assembly, "dims", type(self.assembly).__name__)
      raise ValueError(
        f"assembly of {self.identifier} must be a DataArray with dims {dims}, "
        f"got {got}."
      )
    assembly = self.assembly.transpose(*dims)
    bin_labels(assembly)  # both bound coords are there
    # Bins in time order (by start, then end), whatever order the file has.
    order = np.lexsort(
      (assembly["time_bin_end"].values, assembly["time_bin_start"].values)
    )
    assembly = assembly.isel(time_bin=order)
    self.bins = bin_labels(assembly)
    self.starts = tuple(float(v) for v in assembly["time_bin_start"].values)
    self.ends = tuple(float(v) for v in assembly["time_bin_end"].values)
    self.benchmarks = tuple(
      NeuralBenchmark(
        identifier=f"{self.identifier}.t{label}",
        version=self.version,
        assembly=assembly.isel(time_bin=b, drop=True),
        stimuli=self.stimuli,
        visual_degrees=self.visual_degrees,
        **self.options,
      )
      for b, label in enumerate(self.bins)
    )
    # Bins share presentations, so these hold by construction.
    assert all(b.stimulus_ids == self.stimulus_ids for b in self.benchmarks)

  @property
  def stimulus_ids(self) -> tuple[str, ...]:
    return self.benchmarks[0].stimulus_ids

  @property
  def n_stimuli(self) -> int:
    return len(self.stimulus_ids)

  def splits(self) -> kernels.Splits:
    """The splits every bin is scored on."""
    return self.benchmarks[0].splits()

  def _bin_index(self, key: int | str) -> int:
    if isinstance(key, str) and key in self.bins:
      return self.bins.index(key)
    if isinstance(key, int | np.integer) and 0 <= key < len(self.bins):
      return int(key)
    raise ValueError(
      f"layer_for_bin names time bin {key!r}; {self.identifier} has bins "
      f"0..{len(self.bins) - 1} ({', '.join(self.bins)})."
    )

  def _layers_per_bin(self, layer_for_bin, layers) -> dict[int, list[str]]:
    if layer_for_bin is None:
      return {b: list(layers) for b in range(len(self.bins))}
    plan = {}
    for key, names in layer_for_bin.items():
      names = [names] if isinstance(names, str) else list(names)
      unknown = sorted(set(names) - set(layers))
      if unknown:
        raise ValueError(
          f"layer_for_bin names layers {unknown} that the features do not "
          f"hold; they hold {', '.join(layers)}."
        )
      plan[self._bin_index(key)] = names
    if not plan:
      raise ValueError("layer_for_bin is empty; map at least one bin to a layer.")
    return dict(sorted(plan.items()))

  def score_features(
    self,
    features: Mapping[str, np.ndarray | xr.DataArray],
    *,
    stimulus_ids: Sequence[str] | None = None,
    splits: kernels.Splits | Sequence | None = None,
    layer_for_bin: Mapping[int | str, str | Sequence[str]] | None = None,
    dtype=jnp.float32,
  ) -> TimeBinnedScore:
    """Scores features on every bin (or each bin on its mapped layers).

    Args:
      features: ``{layer: array}`` as ``NeuralBenchmark.score_features`` takes.
      stimulus_ids: ids of the rows of plain arrays.
      splits: shared by every bin; default ``self.splits()``.
      layer_for_bin: ``{bin index or "start-end": layer or layers}``; bins
        left out are not scored. Default: every layer on every bin.
      dtype: compute dtype.
    """
    if not isinstance(features, Mapping) or not features:
      raise ValueError("features must be a non-empty {layer: array} mapping.")
    plan = self._layers_per_bin(layer_for_bin, list(features))
    shared = self.benchmarks[0]._resolve_splits(splits)
    scores = tuple(
      self.benchmarks[b].score_features(
        {layer: features[layer] for layer in names},
        stimulus_ids=stimulus_ids,
        splits=shared,
        dtype=dtype,
      )
      for b, names in plan.items()
    )
    return TimeBinnedScore(
      benchmark=self.identifier,
      version=self.version,
      bins=tuple(self.bins[b] for b in plan),
      starts=tuple(self.starts[b] for b in plan),
      ends=tuple(self.ends[b] for b in plan),
      scores=scores,
    )

  def score_model(
    self,
    model: VisionModel,
    *,
    layers: Sequence[str] | None = None,
    layer_for_bin: Mapping[int | str, str | Sequence[str]] | None = None,
    batch_size: int = 32,
    dtype=jnp.float32,
    progress: Callable[[int], None] | None = None,
  ) -> TimeBinnedScore:
    """Runs the model once on the stimuli and scores each bin."""
    if layers is None and layer_for_bin is not None:
      layers = sorted(
        {n for v in layer_for_bin.values() for n in ([v] if isinstance(v, str) else v)}
      )
    features = activations.extract(
      model,
      self.stimuli.subset(self.stimulus_ids).images,
      source_degrees=self.visual_degrees,
      layers=layers,
      batch_size=batch_size,
      progress=progress,
    )
    return self.score_features(
      features,
      stimulus_ids=self.stimulus_ids,
      layer_for_bin=layer_for_bin,
      dtype=dtype,
    )
