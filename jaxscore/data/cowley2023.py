"""Macaque V4 recordings of Cowley, Stan, Pillow & Smith (2023).

Utah-array recordings from V4, spike counts in a 100 ms bin. Session 210325
holds single trials (50 neurons x 640 images x 6-10 repeats, NaN-padded) to
the 640 "naturalistic" images of Bashivan, Kar & DiCarlo (2019): eight objects
in consecutive blocks of 80 images. Sessions 190923, 201025, 210225 and 210322
hold repeat-averaged responses to 1200 images each, with no single trials.

Image ``i`` (1-based file name ``image{i:04d}.jpg``) matches response column
``i - 1``.

References:
  Cowley, B.R., Stan, P.L., Pillow, J.W. & Smith, M.A. (2023). Compact deep
  neural network models of visual cortex. bioRxiv 2023.11.22.568315.
  Data: github.com/cowleygroup/V4_compact_models (GPL-3.0).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from jaxscore.data import assembly as assembly_lib
from jaxscore.data import fetch as fetch_lib
from jaxscore.data.stimuli import StimulusSet, read_zip_images

DATASET = "cowley2023_v4"
TRIALS_SESSION = "210325"
AVERAGED_SESSIONS = ("190923", "201025", "210225", "210322")
# Block order of the 640 naturalistic images (80 consecutive images each). The
# labels are inferred from the images, since upstream ships no metadata.
OBJECT_NAMES = ("bear", "elephant", "face", "car", "dog", "apple", "chair", "plane")
IMAGES_PER_OBJECT = 80


def _stimulus_ids(session: str, n_images: int) -> list[str]:
  return [f"{session}/image{i:04d}" for i in range(1, n_images + 1)]


def _stimuli(session: str, n_images: int, labels: dict) -> StimulusSet:
  path = fetch_lib.fetch(f"{DATASET}/images_{session}.zip")
  names = [f"image{i:04d}.jpg" for i in range(1, n_images + 1)]
  return StimulusSet(
    identifier=f"cowley2023.{session}",
    stimulus_ids=tuple(_stimulus_ids(session, n_images)),
    images=read_zip_images(path, names),
    labels=labels,
  )


def _neuroid_coords(session: str, n_neuroids: int) -> dict:
  return {
    "neuroid_id": [f"{session}.{k:03d}" for k in range(n_neuroids)],
    "region": ["V4"] * n_neuroids,
    "session": [session] * n_neuroids,
  }


def load_trials() -> tuple[xr.DataArray, StimulusSet]:
  """Session 210325: single trials and the 640 naturalistic images.

  Returns:
    assembly: (n_presentations, 50) spike counts, one row per valid trial;
      NaN-padded repeat slots are dropped. Presentation coords
      ``stimulus_id``, ``object_name``, ``repetition``.
    stimuli: the 640 images, labelled with ``object_name``.
  """
  raw = np.load(fetch_lib.fetch(f"{DATASET}/responses_raw_{TRIALS_SESSION}.npy"))
  n_neuroids, n_images, _ = raw.shape
  objects = np.repeat(np.array(OBJECT_NAMES), IMAGES_PER_OBJECT)
  if len(objects) != n_images:
    raise ValueError(
      f"Expected {len(objects)} images in session {TRIALS_SESSION}, got {n_images}."
    )
  # NaN marks an unused repeat slot; the pattern is the same for every neuron.
  valid = np.isfinite(raw).all(axis=0)  # (n_images, n_slots)
  if not np.array_equal(valid, np.isfinite(raw).any(axis=0)):
    raise ValueError("Missing trials differ between neurons; cannot drop them.")
  image_index, slot = np.nonzero(valid)
  ids = np.array(_stimulus_ids(TRIALS_SESSION, n_images))
  assembly = assembly_lib.make_assembly(
    raw[:, image_index, slot].T,
    presentation={
      "stimulus_id": ids[image_index],
      "object_name": objects[image_index],
      "repetition": slot,
    },
    neuroid=_neuroid_coords(TRIALS_SESSION, n_neuroids),
  )
  stimuli = _stimuli(TRIALS_SESSION, n_images, {"object_name": objects})
  return assembly, stimuli


def load_averaged(session: str) -> tuple[xr.DataArray, StimulusSet]:
  """A repeat-averaged session: one row per image, repetition 0.

  Only averages exist for these sessions, so no ceiling can be computed.
  """
  if session not in (*AVERAGED_SESSIONS, TRIALS_SESSION):
    raise ValueError(
      f"Unknown Cowley 2023 session {session!r}; sessions with averaged "
      f"responses are {', '.join((*AVERAGED_SESSIONS, TRIALS_SESSION))}."
    )
  mean = np.load(fetch_lib.fetch(f"{DATASET}/responses_repeat_averaged_{session}.npy"))
  n_neuroids, n_images = mean.shape
  assembly = assembly_lib.make_assembly(
    mean.T,
    presentation={
      "stimulus_id": _stimulus_ids(session, n_images),
      "repetition": np.zeros(n_images, dtype=int),
    },
    neuroid=_neuroid_coords(session, n_neuroids),
  )
  return assembly, _stimuli(session, n_images, {})
