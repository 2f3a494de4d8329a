"""The 92 object images of Kriegeskorte et al. (2008) and their IT RDMs.

Ninety-two photographs of isolated objects (human and animal faces and
bodies, natural and artificial objects) were shown to four human subjects in
fMRI, two sessions each, and to monkeys recorded in IT (Kiani et al. 2007).
Only representational dissimilarity matrices (1 - Pearson r between response
patterns) are published, no responses:

- monkey IT (``mIT``): 674 neurons, one RDM;
- human IT (``hIT``): 316 voxels, the mean of 8 single-subject/session RDMs,
  which are also published (4 subjects x 2 sessions).

The supplemental file stores mIT and hIT as condensed vectors of the 4186
pairs. Their order is that of ``scipy.spatial.distance.squareform`` (row by
row above the diagonal, MATLAB's ``squareform`` too): expanded that way, hIT
equals the mean of the 8 subject RDMs to 1.5e-7 (the file's float32
rounding), while the column-by-column order correlates with that mean at
Spearman -0.005. ``load_hit_rdm`` checks the agreement on every load.

Reading the .mat files needs SciPy (``scipy.io.loadmat``).

References:
  Kriegeskorte, N., Mur, M., Ruff, D.A., Kiani, R., Bodurka, J., Esteky, H.,
    Tanaka, K. & Bandettini, P.A. (2008). Matching categorical object
    representations in inferior temporal cortex of man and monkey. Neuron
    60(6):1126-1141.
  Kiani, R., Esteky, H., Mirpour, K. & Tanaka, K. (2007). Object category
    structure in response patterns of neuronal population in monkey inferior
    temporal cortex. J. Neurophysiol. 97(6):4296-4309.
  Data: github.com/rsagroup/rsatoolbox, demos/92imageData (MIT licence).
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from jaxscore.data import fetch as fetch_lib
from jaxscore.data.stimuli import StimulusSet

DATASET = "kriegeskorte2008_92images"
SUPPLEMENTAL = f"{DATASET}/Kriegeskorte_Neuron2008_supplementalData.mat"
BRAIN_RDMS = f"{DATASET}/92_brainRDMs.mat"
N_STIMULI = 92
IMAGE_SHAPE = (175, 175, 3)
MIT_NAME = "mIT_674neurons"
HIT_NAME = "hITvisStim_316vx"
# Largest |hIT - mean of subject RDMs| accepted; the file holds float32 values.
HIT_TOLERANCE = 1e-5
_SUBJECT_NAME = re.compile(r"^hIT \| (\w+) \| Session: (\d+)$")


@dataclasses.dataclass(frozen=True)
class SubjectRDMs:
  """Single-subject, single-session human IT RDMs.

  Attributes:
    rdms: (n_rdms, n_stimuli, n_stimuli) float64, one RDM per subject and
      session, in the stimulus order of ``stimulus_ids()``.
    subject: (n_rdms,) subject initials, e.g. ``"BE"``.
    session: (n_rdms,) session number, 1 or 2.
  """

  rdms: np.ndarray
  subject: np.ndarray
  session: np.ndarray

  def session_averaged(self) -> tuple[np.ndarray, tuple[str, ...]]:
    """Each subject's RDMs averaged over sessions.

    Returns:
      rdms: (n_subjects, n_stimuli, n_stimuli), subjects in first-seen order.
      subjects: (n_subjects,) their initials.
    """
    subjects = tuple(dict.fromkeys(self.subject.tolist()))
    rdms = np.stack([self.rdms[self.subject == s].mean(axis=0) for s in subjects])
    return rdms, subjects


def _loadmat(key: str) -> dict:
  try:
    import scipy.io
  except ImportError as e:  # scipy is needed only for these files
    raise ImportError(
      "Reading the Kriegeskorte 2008 .mat files needs SciPy; install it with "
      "`pip install scipy`."
    ) from e
  return scipy.io.loadmat(fetch_lib.fetch(key))


def stimulus_ids() -> tuple[str, ...]:
  """``"kriegeskorte2008/img01"`` ... ``"img92"``, in the files' order."""
  return tuple(f"kriegeskorte2008/img{i:02d}" for i in range(1, N_STIMULI + 1))


def _text(cell) -> str:
  """A MATLAB char array from loadmat (nested object arrays) as a string."""
  value = np.asarray(cell)
  while value.dtype == object:
    value = np.asarray(value.ravel()[0])
  return str(value.ravel()[0]) if value.size else ""


def load_stimuli() -> StimulusSet:
  """The 92 images with their category labels.

  Returns:
    A StimulusSet ``"kriegeskorte2008"`` of (175, 175, 3) uint8 RGB images.
    Labels: ``category`` (e.g. ``"human face"``, ``"natural inanimate"``)
    and one bool array per column of the file's ``categoryVectors``, named
    by ``categoryLabels``: ``animate``, ``inanim``, ``human``, ``nonhumani``
    (non-human animal), ``body``, ``face``, ``natObj``, ``artiObj``,
    ``rand24``, ``rand48``, ``other48``, ``monkeyape``.
  """
  data = _loadmat(SUPPLEMENTAL)
  records = data["stimuli_92objs"].ravel()
  if len(records) != N_STIMULI:
    raise ValueError(
      f"{SUPPLEMENTAL} should hold {N_STIMULI} stimuli, found {len(records)}."
    )
  images = tuple(np.ascontiguousarray(r["image"], dtype=np.uint8) for r in records)
  shapes = {image.shape for image in images}
  if shapes != {IMAGE_SHAPE}:
    raise ValueError(
      f"The images of {SUPPLEMENTAL} should all be {IMAGE_SHAPE}, found {shapes}."
    )
  names = [_text(c) for c in data["categoryLabels"].ravel()]
  vectors = np.asarray(data["categoryVectors"])
  if vectors.shape != (N_STIMULI, len(names)):
    raise ValueError(
      f"categoryVectors should be ({N_STIMULI}, {len(names)}), found {vectors.shape}."
    )
  labels = {"category": np.array([_text(r["category"]) for r in records])}
  labels.update({name: vectors[:, j].astype(bool) for j, name in enumerate(names)})
  return StimulusSet("kriegeskorte2008", stimulus_ids(), images, labels)


def squareform(condensed: np.ndarray, n_stimuli: int = N_STIMULI) -> np.ndarray:
  """A condensed RDM (upper triangle, row by row) as a symmetric matrix.

  Args:
    condensed: (n_stimuli * (n_stimuli - 1) / 2,) dissimilarities in the
      order (0, 1), (0, 2), ..., (1, 2), ... (SciPy's and MATLAB's).
    n_stimuli: side of the matrix.

  Returns:
    (n_stimuli, n_stimuli) float64 with a zero diagonal.
  """
  condensed = np.asarray(condensed, np.float64).ravel()
  n_pairs = n_stimuli * (n_stimuli - 1) // 2
  if condensed.shape != (n_pairs,):
    raise ValueError(
      f"A condensed RDM of {n_stimuli} stimuli has {n_pairs} entries, got "
      f"{condensed.size}."
    )
  rows, cols = np.triu_indices(n_stimuli, k=1)
  matrix = np.zeros((n_stimuli, n_stimuli))
  matrix[rows, cols] = condensed
  matrix[cols, rows] = condensed
  return matrix


def _figure1_rdm(name: str) -> np.ndarray:
  records = _loadmat(SUPPLEMENTAL)["RDMs_mIT_hIT_fig1"].ravel()
  found = {_text(r["name"]): r for r in records}
  if name not in found:
    raise ValueError(f"{SUPPLEMENTAL} has no RDM {name!r}; it has {sorted(found)}.")
  return squareform(found[name]["RDM"])


def load_mit_rdm() -> np.ndarray:
  """Monkey IT (674 neurons): (92, 92) float64 RDM, 1 - Pearson r."""
  return _figure1_rdm(MIT_NAME)


def load_hit_rdm() -> np.ndarray:
  """Human IT (316 voxels): (92, 92) float64 RDM, 1 - Pearson r.

  Raises:
    ValueError: it is not the mean of the 8 subject/session RDMs, i.e. the
      condensed vector was expanded in the wrong order or a file changed.
  """
  hit = _figure1_rdm(HIT_NAME)
  mean = load_subject_rdms().rdms.mean(axis=0)
  deviation = float(np.max(np.abs(hit - mean)))
  if deviation > HIT_TOLERANCE:
    raise ValueError(
      f"The hIT RDM of {SUPPLEMENTAL} differs from the mean of the subject "
      f"RDMs in {BRAIN_RDMS} by up to {deviation:.3g} (expected <= "
      f"{HIT_TOLERANCE}); its condensed order is not the one assumed."
    )
  return hit


def load_subject_rdms() -> SubjectRDMs:
  """The 8 human IT RDMs, 4 subjects x 2 sessions, from ``92_brainRDMs.mat``."""
  records = _loadmat(BRAIN_RDMS)["RDMs"].ravel()
  rdms, subjects, sessions = [], [], []
  for record in records:
    name = _text(record["name"])
    match = _SUBJECT_NAME.match(name)
    if match is None:
      raise ValueError(
        f"{BRAIN_RDMS} holds an RDM named {name!r}; expected names like "
        "'hIT | BE | Session: 1'."
      )
    rdm = np.asarray(record["RDM"], np.float64)
    if rdm.shape != (N_STIMULI, N_STIMULI):
      raise ValueError(
        f"RDM {name!r} of {BRAIN_RDMS} should be ({N_STIMULI}, {N_STIMULI}), "
        f"found {rdm.shape}."
      )
    rdms.append(rdm)
    subjects.append(match.group(1))
    sessions.append(int(match.group(2)))
  order = sorted(range(len(rdms)), key=lambda i: (subjects[i], sessions[i]))
  return SubjectRDMs(
    rdms=np.stack([rdms[i] for i in order]),
    subject=np.array([subjects[i] for i in order]),
    session=np.array([sessions[i] for i in order]),
  )
