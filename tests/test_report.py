"""The sweep report: its numbers, its errors, and the page in a real browser."""

import html
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from PIL import Image

import benchmarks
import models
from jaxscore import cache as cache_lib
from jaxscore import report, sweep
from jaxscore import store as store_lib

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
LAYERS = {
  "alexnet": ("features.2", "features.5", "features.7", "features.9", "features.12"),
  "cornet_s": ("V1", "V2", "V4", "IT", "decoder.avgpool", "decoder.linear"),
}
# benchmark: (kind, ceiling or None)
BENCHMARKS = {
  "cowley2023.V4-pls": ("regression", 0.62),
  "cowley2023.V4.190923-ridge": ("regression", None),
  "kriegeskorte2008.hIT-rsa": ("rsa", 0.31),
  "kriegeskorte2008.mIT-rsa": ("rsa", None),
  "lab2024.PIT-pls": ("regression", 0.5),  # no region: "other"
}
REGRESSION = store_lib.metric_settings(
  {"regression": "pls", "n_components": 25, "n_splits": 10, "dtype": "float32"}
)
RSA = store_lib.metric_settings({"metric": "rsa-spearman", "dtype": "float32"})


def _profile(rng, n_layers, peak):
  """(n_layers,) raw scores rising to ``peak`` and falling, plus noise."""
  depth = np.linspace(0, 1, n_layers)
  center = rng.uniform(0.4, 0.8)
  return peak * np.exp(-(((depth - center) / 0.45) ** 2)) + rng.normal(
    0, 0.01, n_layers
  )


def _add(store, model, benchmark, layers, raw, *, protocol="all", extra=None):
  kind, ceiling = BENCHMARKS[benchmark]
  rng = np.random.default_rng(len(layers))
  for layer, value in zip(layers, raw, strict=True):
    ceiled = None if ceiling is None else value**2 / ceiling
    if kind == "rsa":
      ceiled = None if ceiling is None else value / ceiling
    details = {"kind": kind, "notes": []}
    if kind == "rsa":
      details["metric"] = "rsa-spearman"
    details.update(extra or {})
    store.add(
      store_lib.Key(
        model=model,
        params_hash=f"{model}-hash",
        benchmark=benchmark,
        benchmark_version=1,
        layer=extra["committed_layer"] if extra else layer,
        metric=RSA if kind == "rsa" else REGRESSION,
        protocol=protocol,
      ),
      raw=value,
      error=rng.uniform(0.01, 0.04),
      ceiling=ceiling,
      ceiled=ceiled,
      n_features=4096,
      details=details,
    )


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
  """A store of two synthetic models on five benchmarks (with a committed
  row) and tiny_cnn's real rows on kriegeskorte2008.mIT-rsa; returns
  (path, {(model, benchmark): best score})."""
  folder = tmp_path_factory.mktemp("report")
  path = folder / "store.sqlite"
  rng = np.random.default_rng(0)
  best = {}
  with store_lib.Store(path) as store:
    for model, layers in LAYERS.items():
      for benchmark, (kind, ceiling) in BENCHMARKS.items():
        peak = 0.55 if kind == "regression" else 0.2
        raw = _profile(rng, len(layers), peak)
        _add(store, model, benchmark, layers, raw)
        if ceiling is None:
          best[model, benchmark] = raw.max()
        elif kind == "rsa":
          best[model, benchmark] = raw.max() / ceiling
        else:
          best[model, benchmark] = raw.max() ** 2 / ceiling
    layers = LAYERS["alexnet"]
    select = _profile(rng, len(layers), 0.5)
    _add(
      store, "alexnet", "cowley2023.V4-pls", layers, select, protocol="commit-select"
    )
    chosen = layers[int(np.argmax(select))]
    halves = {"commitment_stimuli": 320, "scoring_stimuli": 320}
    _add(
      store,
      "alexnet",
      "cowley2023.V4-pls",
      [chosen],
      [0.41],
      protocol="committed",
      extra={"committed_layer": chosen, **halves},
    )

    benchmark = benchmarks.load_benchmark("kriegeskorte2008.mIT-rsa")
    model = models.load_model("tiny_cnn", key=jax.random.key(0))
    pair = sweep.Pair(
      model_name="tiny_cnn",
      params_hash=store_lib.params_hash(model.variables),
      benchmark=benchmark,
      layers=tuple(model.layers),
    )
    cache = cache_lib.ActivationCache(folder / "cache")
    assert sweep.run_pair(pair, model, store=store, cache=cache) == len(model.layers)
    real = store.rows(model="tiny_cnn")
    best["tiny_cnn", "kriegeskorte2008.mIT-rsa"] = max(r["raw"] for r in real)
  return path, best, chosen


def _train_run(folder, align_weight, rng):
  """A launch.train workdir: scores.json with 7 scored steps."""
  folder.mkdir()
  name = "cowley2023.V4-ridge"
  records = []
  for step in range(0, 151, 25):
    record = {"step": step, "train/loss": 2.0 - step / 100}
    record[f"score/{name}/ceiling"] = 0.6
    for i, layer in enumerate(("conv1", "conv2", "conv3", "pool")):
      raw = 0.15 + 0.04 * i + step / 1000 * (0.5 + align_weight) + rng.normal(0, 0.01)
      key = f"score/{name}/{layer}"
      record.update(
        {
          f"{key}/raw": raw,
          f"{key}/raw_sem": 0.02,
          f"{key}/raw_low": raw - 0.04,
          f"{key}/raw_high": raw + 0.035,
          f"{key}/ceiled": raw**2 / 0.6,
        }
      )
    records.append(record)
  config = {"workdir": str(folder), "benchmark": name, "align_weight": align_weight}
  (folder / "scores.json").write_text(
    json.dumps({"config": config, "records": records})
  )
  return folder


def test_leaderboard_numbers(filled):
  path, best, chosen = filled
  rows = report.load_rows(path)
  all_profiles, notes = report.profiles(rows)
  assert notes == []
  board = report.leaderboard(all_profiles)
  assert board.benchmarks == (
    "cowley2023.V4-pls",
    "cowley2023.V4.190923-ridge",
    "kriegeskorte2008.hIT-rsa",
    "kriegeskorte2008.mIT-rsa",
    "lab2024.PIT-pls",
  )
  assert board.regions == ("V4", "IT")
  for (model, benchmark), value in best.items():
    assert board.cells[model, benchmark].value == pytest.approx(value)
  for model in LAYERS:
    v4 = (
      best[model, "cowley2023.V4-pls"] + best[model, "cowley2023.V4.190923-ridge"]
    ) / 2
    it = (
      best[model, "kriegeskorte2008.hIT-rsa"] + best[model, "kriegeskorte2008.mIT-rsa"]
    ) / 2
    assert board.region_scores[model, "V4"] == pytest.approx(v4)
    assert board.region_scores[model, "IT"] == pytest.approx(it)
    assert board.overall[model] == pytest.approx((v4 + it) / 2)  # PIT left out
  assert board.cells["alexnet", "cowley2023.V4-pls"].kind == "ceiled"
  assert board.cells["alexnet", "kriegeskorte2008.mIT-rsa"].kind == "raw"
  # tiny_cnn has only mIT: no IT mean (hIT missing), no V4, no overall
  assert board.region_scores["tiny_cnn", "IT"] is None
  assert board.overall["tiny_cnn"] is None
  assert board.models[-1] == "tiny_cnn"
  ranked = sorted(LAYERS, key=lambda m: -board.overall[m])
  assert list(board.models[:2]) == ranked

  (commit,) = report.committed(rows)
  assert (commit.model, commit.layer, commit.kind) == ("alexnet", chosen, "ceiled")
  assert commit.value == pytest.approx(0.41**2 / 0.62)
  protocols = {(p.model, p.protocol) for p in all_profiles}
  assert ("alexnet", "commit-select") in protocols
  tiny = next(p for p in all_profiles if p.model == "tiny_cnn")
  assert tiny.layers == ("conv1", "conv2", "conv3", "pool")  # rowid order
  assert np.isfinite(tiny.error).all() and tiny.ceiling is None


def test_bad_input_is_refused_by_name(filled, tmp_path):
  path, _, _ = filled
  with pytest.raises(ValueError, match="store must be an existing SQLite file"):
    report.load_rows(tmp_path / "missing.sqlite")
  (tmp_path / "text.sqlite").write_text("not a database")
  with pytest.raises(ValueError, match="store must be a jaxscore SQLite store"):
    report.load_rows(tmp_path / "text.sqlite")
  store_lib.Store(tmp_path / "empty.sqlite").close()
  with pytest.raises(ValueError, match="holds no rows"):
    report.load_rows(tmp_path / "empty.sqlite")
  (tmp_path / "no_scores").mkdir()
  with pytest.raises(ValueError, match=r"train_runs must name folders.*no_scores"):
    report.load_train_runs([tmp_path / "no_scores"])
  foreign = tmp_path / "foreign"
  foreign.mkdir()
  (foreign / "notes.txt").write_text("mine")
  with pytest.raises(ValueError, match="out must be a new folder"):
    report.write(foreign, report.load_rows(path))
  assert (foreign / "notes.txt").read_text() == "mine"


def _chromium(tmp_path, *args):
  if not CHROMIUM.is_file():
    reason = f"{CHROMIUM} is missing (apt-get install chromium)"
    if os.environ.get("CI"):
      pytest.fail(f"{reason}; CI must open the report in a browser.")
    pytest.skip(reason)
  command = [
    str(CHROMIUM),
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    f"--user-data-dir={tmp_path / 'chromium-profile'}",
    "--virtual-time-budget=10000",
    *args,
  ]
  return subprocess.run(command, capture_output=True, text=True, timeout=120)


# After load: how many images decoded, which did not, and the tables' rows.
_CHECK = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const rows = {};
  for (const t of document.querySelectorAll("table[id]")) {
    rows[t.id] = t.tBodies[0].rows.length;
  }
  const out = document.createElement("pre");
  out.id = "check";
  out.textContent = JSON.stringify({
    images: images.length,
    broken: images.filter(i => !(i.complete && i.naturalWidth > 0))
      .map(i => i.getAttribute("src")),
    rows: rows,
  });
  document.body.appendChild(out);
});
</script>"""


def test_the_page_renders_in_chromium(filled, tmp_path):
  path, _, _ = filled
  rng = np.random.default_rng(1)
  runs = [
    _train_run(tmp_path / "plain", 0.0, rng),
    _train_run(tmp_path / "aligned", 1.0, rng),
  ]
  out = tmp_path / "page"
  for _ in range(2):  # the second run replaces the first report
    done = subprocess.run(
      [
        sys.executable,
        "-m",
        "launch.report",
        f"--store={path}",
        f"--out={out}",
        f"--train_runs={','.join(map(str, runs))}",
      ],
      cwd=ROOT,
      env=dict(os.environ, JAX_PLATFORMS="cpu"),
      capture_output=True,
      text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
  assert not [p for p in tmp_path.iterdir() if p.name.startswith(".page.")]
  page = (out / "index.html").read_text()
  pngs = sorted(p.name for p in out.glob("*.png"))
  # one profile figure per model, one training figure per benchmark
  assert len(pngs) == len(LAYERS) + 1 + 1
  assert sorted(re.findall(r'<img src="([^"]+)"', page)) == pngs

  check = out / "check.html"
  check.write_text(page.replace("</body>", _CHECK + "</body>"))
  done = _chromium(tmp_path, "--dump-dom", check.as_uri())
  found = re.search(r'<pre id="check">(.*?)</pre>', done.stdout, re.S)
  assert found, f"no check in the dumped page; chromium said: {done.stderr[-2000:]}"
  result = json.loads(html.unescape(found.group(1)))
  assert result["images"] == len(pngs)
  assert result["broken"] == []
  assert result["rows"] == {"leaderboard": 3, "committed": 1, "train-runs": 2}

  shot = tmp_path / "page.png"
  _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1400,2400", check.as_uri())
  pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
  assert pixels.shape == (2400, 1400)
  assert (pixels < 128).mean() > 0.01 and pixels.std() > 20  # not blank
  if os.environ.get("JAXSCORE_REPORT_KEEP"):  # to look at the page by hand
    keep = Path(os.environ["JAXSCORE_REPORT_KEEP"])
    keep.mkdir(parents=True, exist_ok=True)
    for p in [shot, *out.iterdir()]:
      (keep / p.name).write_bytes(p.read_bytes())


def test_launch_scripts_import_together():
  # absl has one flag registry: the scripts share --store through common
  from absl import flags

  import launch.report
  import launch.score
  import launch.sweep
  import launch.train
  from launch import common

  assert flags.FLAGS["store"].default == common.STORE.default  # defined once
  assert flags.FLAGS["out"].default == "results/report"
  del launch.report, launch.score, launch.sweep, launch.train


def test_other_weights_and_settings_stay_apart(tmp_path):
  def add(store, params_hash, seed, layer, raw):
    store.add(
      store_lib.Key(
        model="resnet18",
        params_hash=params_hash,
        benchmark="cowley2023.V4-pls",
        benchmark_version=1,
        layer=layer,
        metric=REGRESSION,
        seed=seed,
      ),
      raw=raw,
      error=0.02,
      ceiling=0.6,
      ceiled=raw**2 / 0.6,
      n_features=512,
      details={"kind": "regression"},
    )

  with store_lib.Store(tmp_path / "s.sqlite") as store:
    add(store, "a" * 64, 0, "layer1", 0.3)
    add(store, "a" * 64, 1, "layer1", 0.5)  # the same weights, a later seed
    add(store, "a" * 64, 1, "layer2", 0.4)
    add(store, "b" * 64, 0, "layer1", 0.2)  # other weights
  all_profiles, notes = report.profiles(report.load_rows(tmp_path / "s.sqlite"))
  by_label = {p.model: p for p in all_profiles}
  assert sorted(by_label) == ["resnet18 [aaaaaaaa]", "resnet18 [bbbbbbbb]"]
  kept = by_label["resnet18 [aaaaaaaa]"]
  assert kept.layers == ("layer1", "layer2")
  np.testing.assert_allclose(kept.raw, [0.5, 0.4])
  (note,) = notes
  assert "resnet18 [aaaaaaaa]" in note and "seed 0" in note
