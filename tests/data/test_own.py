"""Own recordings (a response array plus images) as a benchmark."""

import csv
import zipfile

import numpy as np
import pytest
from PIL import Image

from jaxscore.benchmark import NeuralBenchmark
from jaxscore.data import own
from jaxscore.rsa_benchmark import RSABenchmark

N_NEURONS, N_IMAGES, N_REPS = 5, 30, 3


def write_images(folder, n=N_IMAGES, *, names=None):
  """n small PNGs with distinct colours; returns the written pixels by name."""
  folder.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(2)
  written = {}
  for k, name in enumerate(names or [f"img{i:02d}.png" for i in range(n)]):
    pixels = rng.integers(0, 256, size=(6, 7, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / name)
    written[name] = pixels
    del k
  return written


def zip_folder(folder, path):
  with zipfile.ZipFile(path, "w") as archive:
    for file in sorted(folder.iterdir()):
      archive.write(file, f"stimuli/{file.name}")
  return path


def write_labels(path, rows, header=("filename", "object_name")):
  with path.open("w", newline="") as handle:
    writer = csv.writer(handle)
    writer.writerow(header)
    writer.writerows(rows)
  return path


def responses(seed=0, nan_slots=True):
  rng = np.random.default_rng(seed)
  signal = rng.normal(size=(N_NEURONS, N_IMAGES, 1))
  trials = signal + 0.3 * rng.normal(size=(N_NEURONS, N_IMAGES, N_REPS))
  if nan_slots:
    trials[:, 4, 2] = np.nan  # image 4 shown twice only
  return trials


def test_sorted_file_names_give_the_order_by_default(tmp_path):
  written = write_images(tmp_path / "imgs")
  trials = responses()
  np.save(tmp_path / "r.npy", trials)
  bench = own.load_benchmark(tmp_path / "r.npy", tmp_path / "imgs")
  assert isinstance(bench, NeuralBenchmark) and bench.has_ceiling
  assert bench.identifier == "own.r-pls"
  assert bench.stimulus_ids == tuple(f"img{i:02d}" for i in range(N_IMAGES))
  np.testing.assert_allclose(bench.targets, np.nanmean(trials, axis=2).T)
  assert bench.assembly.sizes["presentation"] == N_IMAGES * N_REPS - 1
  for stimulus_id, image in zip(
    bench.stimuli.stimulus_ids, bench.stimuli.images, strict=True
  ):
    np.testing.assert_array_equal(image, written[f"{stimulus_id}.png"])
  assert bench.labels is None
  # the same from a zip, where images sit in a sub-folder
  zipped = own.load_benchmark(
    tmp_path / "r.npy", zip_folder(tmp_path / "imgs", tmp_path / "i.zip")
  )
  assert zipped.stimulus_ids == bench.stimulus_ids
  assert zipped.stimuli.content_hash() == bench.stimuli.content_hash()


def test_labels_csv_gives_order_and_strata(tmp_path):
  write_images(tmp_path / "imgs")
  trials = responses()
  np.save(tmp_path / "r.npy", trials)
  order = [f"img{i:02d}" for i in reversed(range(N_IMAGES))]
  labels = write_labels(
    tmp_path / "l.csv",
    [(s, "a" if k < 15 else "b") for k, s in enumerate(order)],
    header=("stimulus_id", "category"),
  )
  bench = own.load_benchmark(tmp_path / "r.npy", tmp_path / "imgs", labels)
  assert bench.stimulus_ids == tuple(order)
  np.testing.assert_allclose(bench.targets[0], np.nanmean(trials[:, 0], axis=1))
  assert bench.labels.tolist() == ["a"] * 15 + ["b"] * 15
  test = np.asarray(bench.splits().test)
  assert all(set(bench.labels[t]) == {"a", "b"} for t in test)


def test_averaged_responses_have_no_ceiling_and_rdm_metrics_work(tmp_path):
  write_images(tmp_path / "imgs")
  np.save(tmp_path / "r.npy", responses()[:, :, 0])
  bench = own.load_benchmark(tmp_path / "r.npy", tmp_path / "imgs", metric="ridge")
  assert not bench.has_ceiling and bench.ceiling is None
  assert bench.regression.kind == "ridge"
  rsa = own.load_benchmark(tmp_path / "r.npy", tmp_path / "imgs", metric="cka")
  assert isinstance(rsa, RSABenchmark) and rsa.ceiling is None
  mean = responses()[:, :, 0].T
  np.testing.assert_allclose(rsa.rdms[0], 1 - np.corrcoef(mean), atol=1e-5)


def _dead_neuron(trials):
  trials = trials.copy()
  trials[3] = np.nan
  return trials


def _differing_nan(trials):
  trials = np.nan_to_num(trials)
  trials[1, 2, 0] = np.nan  # only neuron 1 lacks this trial
  return trials


def _unseen_image(trials):
  trials = trials.copy()
  trials[:, 7] = np.nan
  return trials


@pytest.mark.parametrize(
  ("make", "match"),
  [
    (lambda t: t[0, 0], r"must be \(n_neurons, n_images\).*got shape \(3,\)"),
    (lambda t: t[..., None], r"got shape \(5, 30, 3, 1\)"),
    (lambda t: t[:, :10], "responses to 10 images .* there are 30"),
    (_dead_neuron, r"no response at all \(all NaN\).*\[3\]"),
    (_differing_nan, "differ between neurons, e.g. at image 2"),
    (_unseen_image, r"no response in any repeat, e.g. \['img07'\]"),
    (lambda t: t.astype(str), "must be numbers"),
  ],
)
def test_bad_responses_are_named(tmp_path, make, match):
  write_images(tmp_path / "imgs")
  np.save(tmp_path / "r.npy", make(responses()))
  with pytest.raises(ValueError, match=match):
    own.load_benchmark(tmp_path / "r.npy", tmp_path / "imgs")


def test_bad_images_and_labels_are_named(tmp_path):
  np.save(tmp_path / "r.npy", responses())
  write_images(tmp_path / "imgs")
  (tmp_path / "imgs" / "notes.txt").write_text("hello")
  with pytest.raises(ValueError, match=r"not images, e\.g\. \['notes\.txt'\]"):
    own.load_benchmark(tmp_path / "r.npy", tmp_path / "imgs")
  (tmp_path / "imgs" / "notes.txt").unlink()
  (tmp_path / "imgs" / ".DS_Store").write_text("hidden files are skipped")
  (tmp_path / "imgs" / "img05.png").write_text("not a png")
  with pytest.raises(ValueError, match=r"\'img05\.png\' cannot be decoded"):
    own.load_benchmark(tmp_path / "r.npy", tmp_path / "imgs")
  with pytest.raises(ValueError, match=r"must be a folder or a \.zip"):
    own.load_benchmark(tmp_path / "r.npy", tmp_path / "r.npy")
  write_images(tmp_path / "imgs")
  rows = [(f"img{i:02d}.png", "a") for i in range(N_IMAGES)]
  missing = write_labels(tmp_path / "m.csv", [*rows[:-1], ("img99.png", "a")])
  with pytest.raises(ValueError, match=r"not in .*img99\.png"):
    own.load_benchmark(tmp_path / "r.npy", tmp_path / "imgs", missing)
  short = write_labels(tmp_path / "s.csv", rows[:-1])
  with pytest.raises(ValueError, match=r"not listed in .*img29\.png"):
    own.load_benchmark(tmp_path / "r.npy", tmp_path / "imgs", short)
  nokey = write_labels(tmp_path / "k.csv", rows, header=("image", "object_name"))
  with pytest.raises(ValueError, match="'filename' or 'stimulus_id' column"):
    own.load_benchmark(tmp_path / "r.npy", tmp_path / "imgs", nokey)
  with pytest.raises(ValueError, match="metric must be one of"):
    own.load_benchmark(tmp_path / "r.npy", tmp_path / "imgs", metric="svm")


def test_images_under_dot_folders_and_relative_paths_are_found(tmp_path, monkeypatch):
  # Only parts below the images folder count as hidden: a folder under
  # ~/.cache, or given as ../imgs, still holds its images.
  folder = tmp_path / ".cache" / "imgs"
  written = write_images(folder)
  (folder / ".DS_Store").write_text("skipped")
  (folder / ".thumbs").mkdir()
  (folder / ".thumbs" / "img00.png").write_text("a hidden folder is skipped")
  assert sorted(own.list_images(folder)) == sorted(written)
  (tmp_path / ".cache" / "work").mkdir()
  monkeypatch.chdir(tmp_path / ".cache" / "work")
  assert sorted(own.list_images("../imgs")) == sorted(written)
  np.save(tmp_path / "r.npy", responses())
  bench = own.load_benchmark(tmp_path / "r.npy", "../imgs")
  assert bench.stimulus_ids == tuple(f"img{i:02d}" for i in range(N_IMAGES))


def test_files_sharing_a_name_in_different_folders_are_an_error(tmp_path):
  write_images(tmp_path / "imgs")
  write_images(tmp_path / "imgs" / "sub", names=["img03.png"])
  with pytest.raises(ValueError, match=r"e\.g\. img03\.png, sub/img03\.png"):
    own.list_images(tmp_path / "imgs")
  with zipfile.ZipFile(tmp_path / "i.zip", "w") as archive:
    archive.write(tmp_path / "imgs" / "img03.png", "a/img03.png")
    archive.write(tmp_path / "imgs" / "img04.png", "a/img04.png")
    archive.write(tmp_path / "imgs" / "sub" / "img03.png", "b/img03.png")
  with pytest.raises(ValueError, match=r"e\.g\. a/img03\.png, b/img03\.png"):
    own.list_images(tmp_path / "i.zip")


def test_labels_csv_file_problems_are_named(tmp_path):
  np.save(tmp_path / "r.npy", responses())
  write_images(tmp_path / "imgs")
  rows = [(f"img{i:02d}.png", "ab"[i % 2]) for i in range(N_IMAGES)]

  def load(labels):
    return own.load_benchmark(tmp_path / "r.npy", tmp_path / "imgs", labels)

  with pytest.raises(ValueError, match=r"labels .*nope\.csv does not exist"):
    load(tmp_path / "nope.csv")
  (tmp_path / "latin1.csv").write_bytes(
    "filename,object_name\nimg00.png,\xe9\n".encode("latin-1")
  )
  with pytest.raises(ValueError, match=r"labels .*latin1\.csv is not UTF-8"):
    load(tmp_path / "latin1.csv")
  text = (write_labels(tmp_path / "l.csv", rows)).read_text()
  (tmp_path / "bom.csv").write_text(text, encoding="utf-8-sig")
  assert load(tmp_path / "bom.csv").labels.tolist() == [r[1] for r in rows]
  lines = text.splitlines()
  lines[4] = "img03.png"  # a short row: its label is missing
  (tmp_path / "short.csv").write_text("\n".join(lines) + "\n")
  with pytest.raises(ValueError, match=r"short\.csv has 1 cells on line 5"):
    load(tmp_path / "short.csv")
  lines[4] = "img03.png,"  # an empty label cell
  (tmp_path / "empty.csv").write_text("\n".join(lines) + "\n")
  with pytest.raises(ValueError, match=r"empty\.csv has 1 empty cells in column "):
    load(tmp_path / "empty.csv")
  with pytest.raises(ValueError, match=r"'object_name', e\.g\. on line 5"):
    load(tmp_path / "empty.csv")
