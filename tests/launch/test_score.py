"""The score entry point, end to end on the real V4 benchmark."""

import io
import json
import os
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import jax
import numpy as np
import pytest
import scipy.stats
import xarray as xr
from absl import app, flags
from PIL import Image

import benchmarks
import models
from jaxscore import activations
from jaxscore.data import own
from launch import score
from models import checkpoint


@pytest.fixture
def run_main(tmp_path):
  """Runs launch.score.main with the given flags; returns the result JSON."""

  def run(**values):
    argv = ["score"] + [f"--{k}={v}" for k, v in values.items()]
    argv.append(f"--results_dir={tmp_path}")
    flags.FLAGS.unparse_flags()
    flags.FLAGS(argv)
    score.main([])
    folder = tmp_path / values["benchmark"]
    return json.loads((folder / f"{values['model']}.json").read_text()), folder

  yield run
  flags.FLAGS.unparse_flags()


@pytest.mark.slow
def test_tiny_model_on_real_v4_writes_a_complete_result(run_main, capsys):
  result, folder = run_main(model="tiny_cnn", benchmark="cowley2023.V4-pls")
  out = capsys.readouterr().out
  assert "<- best" in out and "ceiling" in out
  assert result["benchmark"] == "cowley2023.V4-pls"
  ceiling = result["ceiling"]["center"]
  # per-neuron reliabilities of this session span 0.54-0.93, median ~0.77
  assert 0.6 < ceiling < 0.9
  layers = {s["layer"]: s for s in result["layers"]}
  assert set(layers) == set(models.load_model("tiny_cnn", key=jax.random.key(0)).layers)
  for s in layers.values():
    assert -0.2 < s["raw"] < 0.9
    assert s["ceiled"] == pytest.approx(s["raw"] ** 2 / ceiling)
    assert len(s["per_split"]) == 10
  assert (
    result["best_layer"] == max(layers.values(), key=lambda s: s["ceiled"])["layer"]
  )
  values = xr.open_dataset(folder / "tiny_cnn.nc", engine="h5netcdf")
  assert values["r"].shape == (len(layers), 10, 50)
  assert values["ceiling"].shape == (10, 50)
  assert not list(folder.glob(".*"))  # no temporary files left behind


@pytest.mark.slow
def test_precomputed_features_score_without_a_model(run_main, tmp_path):
  benchmark = benchmarks.load_benchmark("cowley2023.V4-pls")
  images = benchmark.stimuli.subset(benchmark.stimulus_ids).images
  pixels = np.stack([im[::4, ::4].mean(-1) for im in images])  # (640, 28, 28)
  order = np.random.default_rng(0).permutation(len(pixels))
  path = tmp_path / "pixels.npz"
  ids = np.array(benchmark.stimulus_ids)[order]
  np.savez(path, stimulus_id=ids, pixels=pixels[order])
  result, _ = run_main(model="pixels", benchmark="cowley2023.V4-pls", features=path)
  direct = benchmark.score_features(
    {"pixels": pixels}, stimulus_ids=benchmark.stimulus_ids
  )
  assert result["layers"][0]["raw"] == pytest.approx(direct.layers[0].raw.center)


@pytest.mark.slow
def test_averaged_session_reports_raw_scores_only(run_main):
  result, _ = run_main(model="tiny_cnn", benchmark="cowley2023.V4.190923-pls")
  assert result["ceiling"] is None
  assert all(s["ceiled"] is None for s in result["layers"])
  assert any("No ceiling" in note for note in result["notes"])


def test_unknown_names_list_the_valid_ones():
  with pytest.raises(ValueError, match=r"cowley2023\.V4-pls"):
    benchmarks.load_benchmark("majajhong2015.IT-pls")
  with pytest.raises(ValueError, match="efficientnet_lite0"):
    models.load_model("resnet9000")


def test_bad_flags_are_refused_before_any_work(run_main):
  with pytest.raises(app.UsageError, match="plain file name"):
    run_main(model="../escape", benchmark="cowley2023.V4-pls", features="x.npz")
  with pytest.raises(app.UsageError, match="valid names are"):
    run_main(model="resnet9000", benchmark="cowley2023.V4-pls")
  with pytest.raises(app.UsageError, match="valid benchmarks are"):
    run_main(model="tiny_cnn", benchmark="nope")


def test_features_file_problems_are_named(tmp_path):
  path = tmp_path / "f.npz"
  np.savez(path, conv=np.zeros((3, 2)))
  with pytest.raises(app.UsageError, match="no 'stimulus_id' array"):
    score.read_features(str(path), None)
  np.savez(path, conv=np.zeros((3, 2)), stimulus_id=np.array(["a", "b", "c"]))
  with pytest.raises(app.UsageError, match=r"\['fc'\].*it has conv"):
    score.read_features(str(path), ["fc"])
  ids, features = score.read_features(str(path), ["conv"])
  assert ids == ["a", "b", "c"] and list(features) == ["conv"]


@pytest.mark.slow
def test_command_line_in_default_32_bit_mode(tmp_path):
  """The real entry point in a fresh process, as a user runs it (no x64)."""
  env = {k: v for k, v in os.environ.items() if k != "JAX_ENABLE_X64"}
  root = Path(__file__).resolve().parents[2]
  done = subprocess.run(
    [
      sys.executable,
      "-m",
      "launch.score",
      "--model=tiny_cnn",
      "--benchmark=cowley2023.V4-ridge",
      "--layers=conv3,pool",
      f"--results_dir={tmp_path}",
    ],
    cwd=root,
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert done.returncode == 0, done.stderr[-2000:]
  assert "<- best" in done.stdout
  result = json.loads((tmp_path / "cowley2023.V4-ridge" / "tiny_cnn.json").read_text())
  assert [s["layer"] for s in result["layers"]] == ["conv3", "pool"]
  assert result["run"]["dtype"] == "float32"
  values = xr.open_dataset(tmp_path / "cowley2023.V4-ridge" / "tiny_cnn.nc")
  assert values["alpha"].shape == (2, 10, 50)


@pytest.mark.slow
def test_rdm_benchmark_through_the_command(run_main, capsys):
  result, folder = run_main(model="tiny_cnn", benchmark="kriegeskorte2008.hIT-rsa")
  assert "inter-subject" in capsys.readouterr().out
  assert result["metric"] == "rsa-spearman"
  assert 0 < result["ceiling"]["lower"] < result["ceiling"]["upper"] < 1
  for layer in result["layers"]:
    assert -1 <= layer["raw"] <= 1
    assert layer["ceiled"] == pytest.approx(layer["raw"] / result["ceiling"]["upper"])
  values = xr.open_dataset(folder / "tiny_cnn.nc", engine="h5netcdf")
  assert values["similarity"].shape == (len(result["layers"]), 4)


@pytest.mark.slow
def test_bootstrap_and_comparison_through_the_command(run_main, capsys):
  result, _ = run_main(
    model="tiny_cnn",
    benchmark="cowley2023.V4-pls",
    layers="conv3",  # the best layer of tiny_cnn, which --compare scores fully
    bootstrap=200,
    compare="tiny_cnn",
  )
  out = capsys.readouterr().out
  assert "95% CI" in out and "p = 1" in out
  layer = result["layers"][0]
  low, high = layer["interval"]["raw"]
  assert low < layer["raw"] < high
  low, high = result["ceiling"]["interval"]
  assert low < result["ceiling"]["center"] < high
  comparison = result["comparison"]
  assert comparison["model"] == "tiny_cnn"
  assert comparison["difference"] == pytest.approx(
    layer["raw"] - layer["raw"], abs=1e-6
  )
  assert comparison["p_value"] == 1.0


def test_bootstrap_is_refused_for_rdm_benchmarks(run_main):
  with pytest.raises(app.UsageError, match="jackknife"):
    run_main(model="tiny_cnn", benchmark="kriegeskorte2008.mIT-rsa", bootstrap=100)


@pytest.fixture
def own_data(tmp_path):
  """40 small images in a zip, labels in reversed order, and trials that are
  a linear function of tiny_cnn's pool layer (seed 0) plus noise."""
  rng = np.random.default_rng(3)
  names = [f"im{k:02d}.png" for k in range(40)]
  images = [rng.integers(0, 256, size=(24, 24, 3), dtype=np.uint8) for _ in names]
  with zipfile.ZipFile(tmp_path / "images.zip", "w") as archive:
    for name, image in zip(names, images, strict=True):
      buffer = io.BytesIO()
      Image.fromarray(image).save(buffer, format="PNG")
      archive.writestr(name, buffer.getvalue())
  order = names[::-1]  # the CSV, not the file names, gives the response order
  (tmp_path / "labels.csv").write_text(
    "filename,object_name\n"
    + "".join(f"{n},{'ab'[k % 2]}\n" for k, n in enumerate(order))
  )
  model = models.load_model("tiny_cnn", key=jax.random.key(0))
  by_name = dict(zip(names, images, strict=True))
  pool = activations.extract(
    model, [by_name[n] for n in order], source_degrees=8.0, layers=["pool"]
  )["pool"]
  pool = pool - pool.mean(0)  # unscaled: PLS weighs features by their variance
  weights = rng.normal(size=(pool.shape[1], 2)) @ rng.normal(size=(2, 6))
  signal = (pool @ weights).T  # (6 neurons, 40)
  trials = signal[:, :, None] + 0.2 * signal.std() * rng.normal(size=(6, 40, 3))
  trials[:, 5, 2] = np.nan  # image 5 shown twice only
  np.save(tmp_path / "resp.npy", trials)
  np.save(tmp_path / "mean.npy", np.nanmean(trials, axis=2))
  return tmp_path


def _run_own(tmp_path, **values):
  argv = ["score"] + [f"--{k}={v}" for k, v in values.items()]
  argv.append(f"--results_dir={tmp_path / 'results'}")
  flags.FLAGS.unparse_flags()
  try:
    flags.FLAGS(argv)
    score.main([])
  finally:
    flags.FLAGS.unparse_flags()


@pytest.mark.slow
def test_own_data_from_the_command_line(own_data, capsys):
  _run_own(
    own_data,
    model="tiny_cnn",
    responses=own_data / "resp.npy",
    images=own_data / "images.zip",
    labels=own_data / "labels.csv",
    layers="conv1,pool",
  )
  out = capsys.readouterr().out
  assert "own.resp-pls" in out and "ceiling" in out
  result = json.loads((own_data / "results/own.resp-pls/tiny_cnn.json").read_text())
  layers = {s["layer"]: s for s in result["layers"]}
  assert result["best_layer"] == "pool"
  assert layers["pool"]["raw"] > 0.85  # the planted map
  assert 0.9 < result["ceiling"]["center"] < 1.0
  # the same number from the library, with the rows named by the CSV's order
  benchmark = own.load_benchmark(
    own_data / "resp.npy", own_data / "images.zip", own_data / "labels.csv"
  )
  model = models.load_model("tiny_cnn", key=jax.random.key(0))
  images = benchmark.stimuli.subset(benchmark.stimulus_ids).images
  pool = activations.extract(model, images, source_degrees=8.0, layers=["pool"])
  direct = benchmark.score_features(pool, stimulus_ids=benchmark.stimulus_ids)
  assert benchmark.stimulus_ids[0] == "im39"
  assert layers["pool"]["raw"] == pytest.approx(direct.layers[0].raw.center)

  _run_own(
    own_data,
    model="tiny_cnn",
    responses=own_data / "mean.npy",
    images=own_data / "images.zip",
    labels=own_data / "labels.csv",
    layers="pool",
    metric="rsa",
  )
  out = capsys.readouterr().out
  assert "No ceiling" in out
  result = json.loads((own_data / "results/own.mean-rsa/tiny_cnn.json").read_text())
  assert result["ceiling"] is None
  # Spearman r of the two correlation-distance RDMs' upper triangles (SciPy)
  upper = np.triu_indices(40, 1)
  brain = 1 - np.corrcoef(np.load(own_data / "mean.npy").T)[upper]
  layer = 1 - np.corrcoef(pool["pool"].astype(np.float64))[upper]
  expected = scipy.stats.spearmanr(brain, layer).statistic
  assert result["layers"][0]["raw"] == pytest.approx(expected, abs=1e-3)


def test_own_data_flags_are_checked_before_any_work(own_data):
  given = {"model": "tiny_cnn", "responses": own_data / "resp.npy"}
  with pytest.raises(app.UsageError, match="needs --images"):
    _run_own(own_data, **given)
  with pytest.raises(app.UsageError, match="exactly one of --benchmark"):
    _run_own(own_data, **given, benchmark="cowley2023.V4-pls")
  with pytest.raises(app.UsageError, match="exactly one of --benchmark"):
    _run_own(own_data, model="tiny_cnn")
  with pytest.raises(app.UsageError, match="--metric apply only with --responses"):
    _run_own(own_data, model="tiny_cnn", benchmark="cowley2023.V4-pls", metric="rsa")
  np.save(own_data / "cut.npy", np.load(own_data / "mean.npy")[:, :39])
  with pytest.raises(app.UsageError, match=r"responses to 39 images .* there are 40"):
    _run_own(
      own_data,
      model="tiny_cnn",
      responses=own_data / "cut.npy",
      images=own_data / "images.zip",
    )
  with pytest.raises(app.UsageError, match="not images"):  # the folder holds .npy
    _run_own(own_data, **given, images=own_data)


def _score_command(*extra):
  return [
    sys.executable,
    "-m",
    "launch.score",
    "--model=tiny_cnn",
    "--benchmark=cowley2023.V4-pls",
    "--layers=conv3",
    "--bootstrap=64",
    *extra,
  ]


@pytest.mark.slow
def test_two_processes_share_the_bootstrap_and_match_one(tmp_path, finish_processes):
  """--coordinator_address: two processes (two fake CPU devices each) spread
  the resamples over four devices; process 0 writes what one process would."""
  root = Path(__file__).resolve().parents[2]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  processes = [
    subprocess.Popen(
      _score_command(
        f"--results_dir={tmp_path / str(i)}",
        f"--coordinator_address=127.0.0.1:{port}",
        "--num_processes=2",
        f"--process_id={i}",
      ),
      cwd=root,
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
    )
    for i in range(2)
  ]
  logs = finish_processes(processes, timeout=600)
  assert "Process 1 of 2; 4 devices in all" in logs[1]
  assert not (tmp_path / "1").exists()  # only process 0 writes
  single = subprocess.run(
    _score_command(f"--results_dir={tmp_path / 'single'}"),
    cwd=root,
    env=dict(os.environ, JAX_PLATFORMS="cpu"),
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert single.returncode == 0, single.stderr[-3000:]
  name = Path("cowley2023.V4-pls") / "tiny_cnn.json"
  two = json.loads((tmp_path / "0" / name).read_text())
  one = json.loads((tmp_path / "single" / name).read_text())
  assert two["layers"][0]["interval"] == one["layers"][0]["interval"]
  assert two["ceiling"]["interval"] == one["ceiling"]["interval"]
  assert two["layers"][0]["raw"] == one["layers"][0]["raw"]


def test_multi_process_flags_are_checked(run_main):
  with pytest.raises(app.UsageError, match="needs --coordinator_address"):
    run_main(model="tiny_cnn", benchmark="cowley2023.V4-pls", process_id=0)
  with pytest.raises(app.UsageError, match="needs --num_processes and --process_id"):
    run_main(
      model="tiny_cnn",
      benchmark="cowley2023.V4-pls",
      coordinator_address="127.0.0.1:1",
    )
  with pytest.raises(app.UsageError, match=r"--process_id must be in \[0, 2\)"):
    run_main(
      model="tiny_cnn",
      benchmark="cowley2023.V4-pls",
      coordinator_address="127.0.0.1:1",
      num_processes=2,
      process_id=2,
    )


def test_weights_from_an_orbax_checkpoint(run_main, tmp_path):
  drawn = models.load_model("tiny_cnn", key=jax.random.key(5))
  checkpoint.save(tmp_path / "ckpt", drawn.variables)
  given = {"model": "tiny_cnn", "benchmark": "kriegeskorte2008.mIT-rsa"}
  from_file, _ = run_main(**given, checkpoint=tmp_path / "ckpt")
  from_seed, _ = run_main(**given, seed=5)
  assert [s["raw"] for s in from_file["layers"]] == [
    s["raw"] for s in from_seed["layers"]
  ]
  with pytest.raises(app.UsageError, match="--checkpoint"):
    run_main(**given, checkpoint=tmp_path / "absent")
  with pytest.raises(app.UsageError, match="--features has none"):
    run_main(**given, features="x.npz", state_dict="w.pt")


def test_run_flags_and_feature_files_are_refused_with_the_flag_named(
  run_main, tmp_path
):
  given = {"model": "lab", "benchmark": "kriegeskorte2008.mIT-rsa"}
  with pytest.raises(app.UsageError, match="--batch_size must be at least 1"):
    run_main(**given, batch_size=0)
  with pytest.raises(app.UsageError, match="--layers is empty"):
    run_main(**given, layers="")
  blocker = tmp_path / "file"
  blocker.write_text("")
  with pytest.raises(app.UsageError, match="is not writable"):
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["score", "--model=tiny_cnn", f"--results_dir={blocker / 'sub'}"])
    flags.FLAGS["benchmark"].value = "kriegeskorte2008.mIT-rsa"
    score.main([])
  single = tmp_path / "one.npy"
  np.save(single, np.zeros((92, 3)))
  with pytest.raises(app.UsageError, match="holds one array"):
    run_main(**given, features=single)
  benchmark = benchmarks.load_benchmark("kriegeskorte2008.mIT-rsa")
  ids = np.array(benchmark.stimulus_ids)
  bad = tmp_path / "bad.npz"
  np.savez(bad, conv=np.zeros((91, 3)), stimulus_id=ids[:91])
  with pytest.raises(app.UsageError, match=r"--features=.*bad\.npz: .*missing"):
    run_main(**given, features=bad)
  np.savez(bad, conv=np.zeros((92, 3)), stimulus_id=ids[:, None])
  with pytest.raises(app.UsageError, match=r"shape \(92, 1\), expected"):
    run_main(**given, features=bad)


def test_a_ceiling_that_is_not_finite_never_reaches_the_json(tmp_path):
  trials = np.random.default_rng(0).standard_normal((3, 40, 2))  # 3 neurons
  trials[:, :38, 1] = np.nan  # two images with a second repeat only
  np.save(tmp_path / "r.npy", trials)
  folder = tmp_path / "imgs"
  folder.mkdir()
  for k in range(40):
    Image.fromarray(np.full((8, 8, 3), 6 * k, np.uint8)).save(folder / f"{k:02d}.png")
  with pytest.raises(app.UsageError, match="no reliability estimate"):
    _run_own(tmp_path, model="tiny_cnn", responses=tmp_path / "r.npy", images=folder)
  assert not (tmp_path / "results" / "own.r-pls").exists()
