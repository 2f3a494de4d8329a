"""V4 benchmarks on the recordings of Cowley et al. (2023).

``trials``: session 210325, 50 neurons x 640 naturalistic images with 6-10
single trials each; splits stratified by the object shown (8 blocks of 80);
split-half ceiling over repetitions.

``averaged``: one of the four 1200-image sessions, of which only repeat
averages exist; raw scores only, with unstratified splits.

The stimuli are taken to span 8 degrees of visual angle, the value Brain-Score
uses for the naturalistic images' family of DiCarlo-lab stimuli; the size at
which Cowley et al. showed them is not in the data release.
"""

from __future__ import annotations

from jaxscore import scoring
from jaxscore.benchmark import NeuralBenchmark
from jaxscore.data import cowley2023 as data

VISUAL_DEGREES = 8.0
VERSION = 1
AVERAGED_SESSIONS = data.AVERAGED_SESSIONS


def trials(regression: str) -> NeuralBenchmark:
  assembly, stimuli = data.load_trials()
  return NeuralBenchmark(
    identifier=f"cowley2023.V4-{regression}",
    version=VERSION,
    assembly=assembly,
    stimuli=stimuli,
    visual_degrees=VISUAL_DEGREES,
    regression=scoring.Regression(kind=regression),
    has_ceiling=True,
    stratify_by="object_name",
  )


def averaged(session: str, regression: str) -> NeuralBenchmark:
  assembly, stimuli = data.load_averaged(session)
  return NeuralBenchmark(
    identifier=f"cowley2023.V4.{session}-{regression}",
    version=VERSION,
    assembly=assembly,
    stimuli=stimuli,
    visual_degrees=VISUAL_DEGREES,
    regression=scoring.Regression(kind=regression),
    has_ceiling=False,
    stratify_by=None,
  )
