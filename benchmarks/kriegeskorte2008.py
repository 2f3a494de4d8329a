"""IT benchmarks on the 92 object images of Kriegeskorte et al. (2008).

``human_it``: the 92 x 92 human IT RDM (fMRI, 316 voxels). Raw is the mean
over the 4 subjects of the similarity with each subject's RDM, each subject's
two session RDMs averaged first (so that leaving a subject out removes both of
its sessions); the group mean of those 4 RDMs is the published hIT RDM. The
ceiling gives both Nili et al. (2014) bounds over the 4 subjects, and the
ceiled score is raw / upper bound. On these data, with Spearman RSA: lower
0.379, upper 0.661.

``monkey_it``: the 92 x 92 monkey IT RDM (674 neurons, Kiani et al. 2007).
One RDM, so raw scores only.

Both brain RDMs are 1 - Pearson r between response patterns, so model RDMs
are built the same way. ``metric`` is ``"rsa"`` (Spearman) or ``"cka"``
(unbiased linear CKA of the Grams the RDMs imply; see
``jaxscore.rsa_benchmark``).

The stimuli are taken to span 8 degrees of visual angle, Brain-Score's value
for its IT benchmarks (MajajHong2015, Rajalingham2018, Kar2019). The sizes at
which Kriegeskorte et al. (fMRI) and Kiani et al. (monkey) showed the images
are not in the data release and were not checked against the papers here;
changing this value changes the scores (bump ``VERSION``).
"""

from __future__ import annotations

from jaxscore.data import kriegeskorte2008 as data
from jaxscore.rsa_benchmark import METRICS, RSABenchmark

VISUAL_DEGREES = 8.0
VERSION = 1


def _check_metric(metric: str) -> None:
  if metric not in METRICS:
    raise ValueError(
      f"metric must be one of {', '.join(map(repr, METRICS))}, got {metric!r}."
    )


def human_it(metric: str = "rsa") -> RSABenchmark:
  """Human IT RDM with the inter-subject ceiling."""
  _check_metric(metric)
  rdms, subjects = data.load_subject_rdms().session_averaged()
  return RSABenchmark(
    identifier=f"kriegeskorte2008.hIT-{metric}",
    version=VERSION,
    rdms=rdms,
    stimulus_ids=data.stimulus_ids(),
    stimuli=data.load_stimuli(),
    visual_degrees=VISUAL_DEGREES,
    subjects=subjects,
    metric=metric,
  )


def monkey_it(metric: str = "rsa") -> RSABenchmark:
  """Monkey IT RDM, raw scores only."""
  _check_metric(metric)
  return RSABenchmark(
    identifier=f"kriegeskorte2008.mIT-{metric}",
    version=VERSION,
    rdms=data.load_mit_rdm(),
    stimulus_ids=data.stimulus_ids(),
    stimuli=data.load_stimuli(),
    visual_degrees=VISUAL_DEGREES,
    subjects=("mIT",),
    metric=metric,
  )
