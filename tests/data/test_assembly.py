import numpy as np
import pytest

from jaxscore.data import assembly


def _toy():
  # stimulus a shown 3 times, b twice, c once; 2 neuroids
  ids = ["a", "b", "a", "c", "b", "a"]
  reps = [0, 0, 1, 0, 1, 2]
  values = np.arange(12, dtype=float).reshape(6, 2)
  return assembly.make_assembly(
    values,
    presentation={
      "stimulus_id": ids,
      "repetition": reps,
      "object_name": list("xyxzyx"),
    },
    neuroid={"neuroid_id": ["n0", "n1"], "region": ["V4", "V4"]},
  )


def test_average_repetitions_matches_groupby_mean():
  a = _toy()
  avg = assembly.average_repetitions(a)
  assert avg["stimulus_id"].values.tolist() == ["a", "b", "c"]
  assert avg["object_name"].values.tolist() == ["x", "y", "z"]
  expected = [a.values[[0, 2, 5]].mean(0), a.values[[1, 4]].mean(0), a.values[3]]
  np.testing.assert_allclose(avg.values, np.stack(expected))
  assert "repetition" not in avg.coords


def test_labels_that_vary_within_a_stimulus_are_refused():
  a = _toy().assign_coords(object_name=("presentation", list("xyqzyx")))
  with pytest.raises(ValueError, match="'object_name' differs"):
    assembly.average_repetitions(a)


def test_repetition_array_pads_missing_trials_with_nan():
  dense = assembly.repetition_array(_toy())
  assert dense.shape == (3, 3, 2)
  np.testing.assert_array_equal(
    np.isnan(dense[:, :, 0]),
    [[False, False, False], [False, False, True], [False, True, True]],
  )
  np.testing.assert_allclose(dense[2, 0], [10, 11])
  np.testing.assert_allclose(
    np.nanmean(dense, 0), assembly.average_repetitions(_toy()).values
  )


@pytest.mark.parametrize(
  "change, message",
  [
    (lambda a: a.transpose(), "dims"),
    (lambda a: a.drop_vars("region"), "region"),
    (lambda a: a.where(a > 3), "NaN"),
    (lambda a: a.assign_coords(repetition=("presentation", [0] * 6)), "duplicate"),
    (lambda a: a.assign_coords(neuroid_id=("neuroid", ["n", "n"])), "duplicate"),
  ],
)
def test_bad_assemblies_are_named(change, message):
  with pytest.raises(ValueError, match=message):
    assembly.validate_assembly(change(_toy()))
