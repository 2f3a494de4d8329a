"""The 92-image set: stimuli, the mIT and hIT RDMs and the subject RDMs."""

import numpy as np
import pytest
import scipy.spatial.distance
import scipy.stats

from jaxscore.data import kriegeskorte2008 as data

N = data.N_STIMULI


def _upper(matrix):
  return matrix[np.triu_indices(len(matrix), k=1)]


@pytest.fixture(scope="module")
def subject_rdms():
  return data.load_subject_rdms()


def test_stimuli():
  stimuli = data.load_stimuli()
  assert len(stimuli) == N
  assert stimuli.stimulus_ids[0] == "kriegeskorte2008/img01"
  assert stimuli.stimulus_ids[-1] == "kriegeskorte2008/img92"
  assert {image.shape for image in stimuli.images} == {(175, 175, 3)}
  assert {image.dtype for image in stimuli.images} == {np.dtype(np.uint8)}
  labels = stimuli.labels
  # Counts from the paper's design: 48 animate / 44 inanimate, 24 faces.
  assert labels["animate"].sum() == 48 and labels["inanim"].sum() == 44
  assert labels["face"].sum() == 24 and labels["body"].sum() == 24
  assert not (labels["animate"] & labels["inanim"]).any()
  assert labels["category"][0] == "human bodypart"
  assert set(labels["category"][labels["face"]]) == {"human face", "nonhuman face"}


@pytest.mark.parametrize("load", [data.load_mit_rdm, data.load_hit_rdm])
def test_brain_rdms_are_valid(load):
  rdm = load()
  assert rdm.shape == (N, N)
  np.testing.assert_array_equal(rdm, rdm.T)
  np.testing.assert_array_equal(np.diag(rdm), 0)
  assert np.isfinite(rdm).all()
  assert _upper(rdm).min() > 0 and _upper(rdm).max() < 2  # 1 - Pearson r


def test_subject_rdms(subject_rdms):
  assert subject_rdms.rdms.shape == (8, N, N)
  assert subject_rdms.subject.tolist() == [
    "BE",
    "BE",
    "KO",
    "KO",
    "SN",
    "SN",
    "TI",
    "TI",
  ]
  assert subject_rdms.session.tolist() == [1, 2] * 4
  for rdm in subject_rdms.rdms:
    np.testing.assert_array_equal(rdm, rdm.T)
    np.testing.assert_array_equal(np.diag(rdm), 0)
  averaged, subjects = subject_rdms.session_averaged()
  assert subjects == ("BE", "KO", "SN", "TI")
  np.testing.assert_allclose(averaged[1], subject_rdms.rdms[2:4].mean(0))


def test_hit_is_the_mean_of_subject_rdms(subject_rdms):
  # SOURCE.md: the mean of the 8 subject RDMs equals the supplemental hIT RDM.
  hit, mean = data.load_hit_rdm(), subject_rdms.rdms.mean(0)
  assert scipy.stats.spearmanr(_upper(hit), _upper(mean))[0] > 0.99999
  assert np.abs(hit - mean).max() < 1e-6


def test_condensed_order_is_scipy_squareform(subject_rdms):
  # The condensed vector expanded column by column instead does not match.
  hit = data.load_hit_rdm()
  condensed = scipy.spatial.distance.squareform(hit)
  np.testing.assert_array_equal(data.squareform(condensed), hit)
  wrong = np.zeros((N, N))
  wrong[np.tril_indices(N, -1)] = condensed
  wrong = wrong + wrong.T
  mean = subject_rdms.rdms.mean(0)
  assert abs(scipy.stats.spearmanr(_upper(wrong), _upper(mean))[0]) < 0.05


def test_mit_and_hit_agree_as_published():
  rho = scipy.stats.spearmanr(_upper(data.load_mit_rdm()), _upper(data.load_hit_rdm()))[
    0
  ]
  assert rho == pytest.approx(0.44, abs=0.005)


def test_squareform_rejects_a_wrong_length():
  with pytest.raises(ValueError, match="has 6 entries"):
    data.squareform(np.ones(5), n_stimuli=4)
