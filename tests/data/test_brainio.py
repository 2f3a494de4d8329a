"""Brain-Score's file formats, on fixtures written the way brainio writes them."""

import csv
import io
import zipfile

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from PIL import Image

from jaxscore.benchmark import NeuralBenchmark
from jaxscore.data import assembly as assembly_lib
from jaxscore.data import brainio, own

N_OBJECTS, PER_OBJECT, N_REPS, N_FEATURES = 3, 12, 3, 6
N_STIMULI = N_OBJECTS * PER_OBJECT
REGIONS = ("IT",) * 5 + ("V4",) * 3


def _planted(seed=0, n_bins=1):
  """Features and (n_reps, n_stimuli, n_neuroids, n_bins) trials linear in them."""
  rng = np.random.default_rng(seed)
  features = rng.normal(size=(N_STIMULI, N_FEATURES))
  weights = rng.normal(size=(N_FEATURES, len(REGIONS), n_bins))
  signal = np.einsum("sf,fnb->snb", features, weights)
  trials = signal[None] + 0.5 * rng.normal(size=(N_REPS, *signal.shape))
  return features, trials


def _brainio_dataarray(trials, *, id_name="stimulus_id", with_repetition=True):
  """A DataArray with MultiIndexes, as brainio holds assemblies in memory.

  Presentations are interleaved (every stimulus once, then again), so the
  repetition derived from file order is the round.
  """
  n_reps, n_stimuli, n_neuroids, n_bins = trials.shape
  stimulus = np.tile(np.arange(n_stimuli), n_reps)
  rounds = np.repeat(np.arange(n_reps), n_stimuli)
  levels = {
    id_name: [f"im{s:03d}" for s in stimulus],
    "object_name": [f"obj{s // PER_OBJECT}" for s in stimulus],
    "day": rounds * 10 + stimulus % 2,  # per trial: varies within a stimulus
  }
  if with_repetition:
    levels["repetition"] = rounds
  presentation = pd.MultiIndex.from_arrays(list(levels.values()), names=list(levels))
  neuroid = pd.MultiIndex.from_arrays(
    [[f"unit{k}" for k in range(n_neuroids)], list(REGIONS), np.arange(n_neuroids) % 2],
    names=["neuroid_id", "region", "arr"],
  )
  starts = 70 + 50 * np.arange(n_bins)
  time_bin = pd.MultiIndex.from_arrays(
    [starts, starts + 50], names=["time_bin_start", "time_bin_end"]
  )
  values = trials.reshape(n_reps * n_stimuli, n_neuroids, n_bins)
  coords = xr.Coordinates.from_pandas_multiindex
  return xr.DataArray(
    values,
    dims=("presentation", "neuroid", "time_bin"),
    coords={
      **coords(presentation, "presentation"),
      **coords(neuroid, "neuroid"),
      **coords(time_bin, "time_bin"),
    },
  )


def _write_nc(path, array, *, transpose=None):
  """Writes like brainio: MultiIndexes reset into plain coords, then NetCDF."""
  flat = array.reset_index(list(array.indexes))
  if transpose:
    flat = flat.transpose(*transpose)
  flat.to_netcdf(path, engine="h5netcdf")
  # the file holds plain coords only, as brainio's do
  with xr.open_dataset(path, engine="h5netcdf") as written:
    assert not any(isinstance(i, pd.MultiIndex) for i in written.indexes.values())
  return path


def _write_stimulus_set(folder, n, *, file_column="filename", subfolder="images/"):
  colors = np.random.default_rng(1).integers(0, 256, size=(n, 3), dtype=np.uint8)
  images = [np.broadcast_to(c, (8, 10, 3)).copy() for c in colors]
  images = [im + np.arange(10, dtype=np.uint8)[None, :, None] for im in images]
  with zipfile.ZipFile(folder / "stimuli.zip", "w") as archive:
    for k, image in enumerate(images):
      buffer = io.BytesIO()
      Image.fromarray(image).save(buffer, format="PNG")
      archive.writestr(f"{subfolder}file{k:03d}.png", buffer.getvalue())
  with (folder / "stimuli.csv").open("w", newline="") as handle:
    writer = csv.writer(handle)
    writer.writerow(["stimulus_id", "object_name", file_column])
    for k in range(n):
      writer.writerow([f"im{k:03d}", f"obj{k // PER_OBJECT}", f"file{k:03d}.png"])
  return folder / "stimuli.csv", folder / "stimuli.zip", images


def test_assembly_values_and_coords_match_what_was_written(tmp_path):
  _, trials = _planted()
  path = _write_nc(
    tmp_path / "a.nc",
    _brainio_dataarray(trials, with_repetition=False),
    transpose=("neuroid", "time_bin", "presentation"),
  )
  assembly = brainio.load_assembly(path, region="IT")
  assert assembly.dims == ("presentation", "neuroid")
  assert assembly.attrs["time_bin"] == [70.0, 120.0]
  assert assembly.attrs["dropped_coords"] == ["day"]
  it = np.array(REGIONS) == "IT"
  expected = trials[..., 0].reshape(N_REPS * N_STIMULI, len(REGIONS))[:, it]
  np.testing.assert_array_equal(assembly.values, expected)
  assert assembly["neuroid_id"].values.tolist() == [f"unit{k}" for k in range(5)]
  assert set(assembly["region"].values.tolist()) == {"IT"}
  # repetition derived by counting each stimulus's showings in file order
  np.testing.assert_array_equal(
    assembly["repetition"].values, np.repeat(np.arange(N_REPS), N_STIMULI)
  )
  assert assembly["stimulus_id"].values[N_STIMULI + 4] == "im004"
  assert assembly["object_name"].values[PER_OBJECT] == "obj1"
  assembly_lib.validate_assembly(assembly)
  v4 = brainio.load_assembly(path, region="V4")
  assert v4.sizes["neuroid"] == 3 and set(v4["region"].values.tolist()) == {"V4"}


def test_older_image_id_files_and_several_time_bins(tmp_path):
  _, trials = _planted(n_bins=3)
  path = _write_nc(tmp_path / "a.nc", _brainio_dataarray(trials, id_name="image_id"))
  assembly = brainio.load_assembly(path, region="V4")
  assert assembly.dims == ("presentation", "neuroid", "time_bin")
  assert assembly["time_bin_start"].values.tolist() == [70, 120, 170]
  assert assembly["stimulus_id"].values[0] == "im000"
  np.testing.assert_array_equal(assembly.values[:, :, 2], assembly.isel(time_bin=2))
  np.testing.assert_array_equal(
    assembly.values,
    trials.reshape(N_REPS * N_STIMULI, len(REGIONS), 3)[:, 5:],
  )


def test_missing_trials_are_dropped_and_bad_files_named(tmp_path):
  _, trials = _planted()
  array = _brainio_dataarray(trials)
  array.values[3] = np.nan  # a missing trial: NaN for every neuroid
  assembly = brainio.load_assembly(_write_nc(tmp_path / "a.nc", array), region="IT")
  assert assembly.sizes["presentation"] == N_REPS * N_STIMULI - 1
  assert "im003" in assembly["stimulus_id"].values[N_STIMULI:].tolist()

  with pytest.raises(ValueError, match=r"several regions \(IT, V4\)"):
    brainio.load_assembly(tmp_path / "a.nc")
  with pytest.raises(ValueError, match="region='V1' is not in"):
    brainio.load_assembly(tmp_path / "a.nc", region="V1")
  array.values[5, 0] = np.nan
  with pytest.raises(ValueError, match="hold NaN for some"):
    brainio.load_assembly(_write_nc(tmp_path / "b.nc", array), region="IT")
  no_ids = _brainio_dataarray(trials).reset_index("presentation")
  no_ids = no_ids.drop_vars("stimulus_id")
  with pytest.raises(ValueError, match="needs a 'stimulus_id'"):
    brainio.load_assembly(_write_nc(tmp_path / "c.nc", no_ids), region="IT")
  with pytest.raises(ValueError, match=r"dims presentation x neuroid"):
    brainio.from_brainio(xr.DataArray(np.zeros((2, 2)), dims=("a", "b")))


@pytest.mark.parametrize("column", ["filename", "image_file_name"])
def test_stimulus_set_from_csv_and_zip(tmp_path, column):
  csv_path, zip_path, images = _write_stimulus_set(tmp_path, 5, file_column=column)
  stimuli = brainio.load_stimulus_set(csv_path, zip_path)
  assert stimuli.stimulus_ids == tuple(f"im{k:03d}" for k in range(5))
  for got, written in zip(stimuli.images, images, strict=True):
    np.testing.assert_array_equal(got, written)
  assert stimuli.labels["object_name"].tolist() == ["obj0"] * 5
  subset = brainio.load_stimulus_set(
    csv_path, zip_path, stimulus_ids=["im004", "im001"]
  )
  np.testing.assert_array_equal(subset.images[0], images[4])


def test_stimulus_set_problems_are_named(tmp_path):
  csv_path, zip_path, _ = _write_stimulus_set(tmp_path, 3, file_column="path")
  with pytest.raises(ValueError, match=r"no image file name column.*filename"):
    brainio.load_stimulus_set(csv_path, zip_path)
  csv_path, zip_path, _ = _write_stimulus_set(tmp_path, 3)
  with pytest.raises(ValueError, match="not in"):
    brainio.load_stimulus_set(csv_path, zip_path, stimulus_ids=["nope"])
  with zipfile.ZipFile(zip_path, "w") as archive:
    archive.writestr("other.png", b"")
  with pytest.raises(ValueError, match="3 images are missing"):
    brainio.load_stimulus_set(csv_path, zip_path)


def test_full_score_through_neural_and_rdm_benchmarks(tmp_path):
  features, trials = _planted()
  nc = _write_nc(tmp_path / "a.nc", _brainio_dataarray(trials))
  csv_path, zip_path, _ = _write_stimulus_set(tmp_path, N_STIMULI)
  assembly = brainio.load_assembly(nc, region="IT")
  stimuli = brainio.load_stimulus_set(csv_path, zip_path)
  benchmark = NeuralBenchmark("fixture.IT-pls", 1, assembly, stimuli, 8.0)
  ids = [f"im{k:03d}" for k in range(N_STIMULI)]
  noise = np.random.default_rng(5).normal(size=features.shape)
  score = benchmark.score_features(
    {"planted": features, "noise": noise}, stimulus_ids=ids, dtype="float64"
  )
  planted, noisy = score.layers
  assert planted.raw.center > 0.9 and abs(noisy.raw.center) < 0.3
  assert score.best.layer == "planted"
  # signal variance ~6 per neuroid, noise 0.25/trial: reliable halves
  assert 0.9 < score.ceiling.summary.center < 1.0

  # the same score from an assembly built directly from the planted arrays
  it = np.array(REGIONS) == "IT"
  direct = assembly_lib.make_assembly(
    trials[..., 0].reshape(N_REPS * N_STIMULI, -1)[:, it],
    presentation={
      "stimulus_id": np.tile(ids, N_REPS),
      "repetition": np.repeat(np.arange(N_REPS), N_STIMULI),
      "object_name": np.tile(np.repeat(["obj0", "obj1", "obj2"], PER_OBJECT), N_REPS),
    },
    neuroid={"neuroid_id": [f"unit{k}" for k in range(5)], "region": ["IT"] * 5},
  )
  reference = NeuralBenchmark("direct", 1, direct, stimuli, 8.0).score_features(
    {"planted": features}, stimulus_ids=ids, dtype="float64"
  )
  np.testing.assert_allclose(planted.r, reference.layers[0].r, rtol=1e-10)
  np.testing.assert_allclose(score.ceiling.values, reference.ceiling.values)

  rdm = own.rdm_benchmark(
    assembly, stimuli, identifier="fixture.IT-rsa", visual_degrees=8.0
  )
  rsa = rdm.score_features({"planted": features, "noise": noise}, stimulus_ids=ids)
  assert rsa.layers[0].raw > 0.5 > abs(rsa.layers[1].raw)
  assert rsa.ceiling is None


def test_infinite_values_are_refused_by_name(tmp_path):
  _, trials = _planted()
  whole = _brainio_dataarray(trials)
  whole.values[5] = np.inf  # not a missing trial: it must not be dropped
  with pytest.raises(ValueError, match=r"1 presentations .* hold infinite"):
    brainio.load_assembly(_write_nc(tmp_path / "a.nc", whole), region="IT")
  one = _brainio_dataarray(trials)
  one.values[5, 0] = -np.inf  # one cell: not "NaN for some neuroids"
  with pytest.raises(ValueError, match=r"infinite responses, e\.g\. of stimuli"):
    brainio.load_assembly(_write_nc(tmp_path / "b.nc", one), region="IT")


def test_repetitions_must_be_whole_numbers(tmp_path):
  _, trials = _planted()
  array = _brainio_dataarray(trials).reset_index("presentation")
  whole = array.assign_coords(repetition=array["repetition"].astype(float))
  assembly = brainio.from_brainio(whole, region="IT")
  assert assembly["repetition"].dtype == np.int64
  halves = array.assign_coords(repetition=array["repetition"] + 0.5)
  with pytest.raises(ValueError, match=r"non-integer 'repetition' values.*0\.5"):
    brainio.load_assembly(_write_nc(tmp_path / "a.nc", halves), region="IT")
  text = array.assign_coords(repetition=array["repetition"].astype(str))
  with pytest.raises(ValueError, match="'repetition' coordinate of dtype"):
    brainio.from_brainio(text, region="IT")


def test_a_dropped_stratify_coord_is_explained(tmp_path):
  _, trials = _planted()
  array = _brainio_dataarray(trials).reset_index("presentation")
  objects = array["object_name"].values.copy()
  objects[N_STIMULI] = "mislabeled"  # differs between repetitions of im000
  array = array.assign_coords(object_name=("presentation", objects))
  assembly = brainio.from_brainio(array, region="IT")
  assert "object_name" in assembly.attrs["dropped_coords"]
  csv_path, zip_path, _ = _write_stimulus_set(tmp_path, N_STIMULI)
  stimuli = brainio.load_stimulus_set(csv_path, zip_path)
  with pytest.raises(ValueError, match=r"stratify_by='object_name' names no") as e:
    NeuralBenchmark("fixture.IT-pls", 1, assembly, stimuli, 8.0)
  assert "coords are repetition, stimulus_id." in str(e.value)
  assert "differs between repetitions" in str(e.value)
  benchmark = NeuralBenchmark("x", 1, assembly, stimuli, 8.0, stratify_by=None)
  assert benchmark.labels is None
  with pytest.raises(ValueError, match=r"'category' names no .* Pass stratify_by"):
    NeuralBenchmark("x", 1, assembly, stimuli, 8.0, stratify_by="category")


def test_stimulus_csv_problems_name_the_file_and_line(tmp_path):
  csv_path, zip_path, _ = _write_stimulus_set(tmp_path, 4)
  with pytest.raises(ValueError, match=r"csv_path .*nope\.csv does not exist"):
    brainio.load_stimulus_set(tmp_path / "nope.csv", zip_path)
  text = csv_path.read_text()
  (tmp_path / "bom.csv").write_text(text, encoding="utf-8-sig")
  assert len(brainio.load_stimulus_set(tmp_path / "bom.csv", zip_path)) == 4
  (tmp_path / "bytes.csv").write_bytes(text.encode() + b"im9\xff,obj0,f.png\n")
  with pytest.raises(ValueError, match=r"bytes\.csv is not UTF-8"):
    brainio.load_stimulus_set(tmp_path / "bytes.csv", zip_path)
  lines = text.splitlines()
  for row, match in (
    ("im002,obj0", r"short\.csv has 2 cells on line 4"),  # no file name
    ("im002", r"short\.csv has 1 cells on line 4"),
    ("im002,obj0,", r"short\.csv has 1 empty cells in column 'filename'.*line 4"),
    (",obj0,file002.png", r"empty cells in column 'stimulus_id'.*line 4"),
  ):
    (tmp_path / "short.csv").write_text("\n".join([*lines[:3], row, *lines[4:]]))
    with pytest.raises(ValueError, match=match):
      brainio.load_stimulus_set(tmp_path / "short.csv", zip_path)
  # an empty metadata cell is a value like any other
  (tmp_path / "meta.csv").write_text("\n".join([*lines[:3], "im002,,file002.png"]))
  stimuli = brainio.load_stimulus_set(tmp_path / "meta.csv", zip_path)
  assert stimuli.labels["object_name"].tolist() == ["obj0", "obj0", ""]
