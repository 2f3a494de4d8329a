import numpy as np

from jaxscore.data import assembly, cowley2023, fetch


def test_trials_drop_padding_and_average_to_upstream_file():
  trials, stimuli = cowley2023.load_trials()
  raw = np.load(fetch.fetch("cowley2023_v4/responses_raw_210325.npy"))
  assert trials.sizes == {"presentation": int(np.isfinite(raw[0]).sum()), "neuroid": 50}
  assert np.isfinite(trials.values).all()
  averaged = assembly.average_repetitions(trials)
  upstream = np.load(fetch.fetch("cowley2023_v4/responses_repeat_averaged_210325.npy"))
  np.testing.assert_array_equal(averaged.values, upstream.T)
  assert averaged["stimulus_id"].values.tolist() == list(stimuli.stimulus_ids)


def test_objects_come_in_blocks_of_80():
  trials, stimuli = cowley2023.load_trials()
  names = stimuli.labels["object_name"]
  assert names.tolist() == np.repeat(cowley2023.OBJECT_NAMES, 80).tolist()
  averaged = assembly.average_repetitions(trials)
  np.testing.assert_array_equal(averaged["object_name"].values, names)
  assert assembly.repetition_array(trials).shape[0] == 10  # repeat slots
  per_stimulus = trials.groupby("stimulus_id").count().values[:, 0]
  assert per_stimulus.min() == 6 and per_stimulus.max() == 10
  assert trials["region"].values.tolist() == ["V4"] * 50
  assert stimuli.images[0].shape == (112, 112, 3)


def test_averaged_sessions_load():
  for session, n_neuroids in zip(
    cowley2023.AVERAGED_SESSIONS, (33, 89, 55, 59), strict=True
  ):
    responses, stimuli = cowley2023.load_averaged(session)
    assert responses.sizes == {"presentation": 1200, "neuroid": n_neuroids}
    assert len(stimuli) == 1200
