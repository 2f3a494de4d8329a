"""The training entry point: a smoke run end to end, and resuming after a kill."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from jaxscore import trainer

ROOT = Path(__file__).resolve().parents[2]
KILL_AT = 4  # the smoke run checkpoints at 2, 4 and 6


def _command(workdir):
  # A workdir relative to the current folder, as users type it (the runs
  # start in tmp_path).
  name = Path(workdir).name
  return [sys.executable, "-m", "launch.train", f"--workdir={name}", "--smoke"]


def _env():
  # The runs start in tmp_path: the checkout goes on the path explicitly.
  path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=path)
  for name in ("JAXSCORE_MIRROR", "JAXSCORE_CACHE"):  # may be relative to here
    if env.get(name):
      env[name] = str(Path(env[name]).resolve())
  return env


def _final_state(workdir):
  manager = ocp.CheckpointManager(Path(workdir) / "checkpoints")
  step = manager.latest_step()
  state = manager.restore(step, args=ocp.args.StandardRestore())
  manager.close()
  return step, jax.tree.leaves(state)


def _records(workdir):
  return json.loads((Path(workdir) / "scores.json").read_text())["records"]


def test_launch_scripts_share_one_flag_registry():
  code = "import launch.score, launch.sweep, launch.train"
  subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(), check=True)


@pytest.mark.slow
def test_a_killed_run_resumes_bit_identical_to_an_uninterrupted_one(tmp_path):
  whole, killed = tmp_path / "whole", tmp_path / "killed"
  # Both start together: the uninterrupted run and the one killed once the
  # checkpoint of step KILL_AT is complete (orbax renames it into place).
  uninterrupted = subprocess.Popen(
    _command(whole), cwd=tmp_path, env=_env(), stderr=subprocess.DEVNULL
  )
  process = subprocess.Popen(
    _command(killed), cwd=tmp_path, env=_env(), stderr=subprocess.DEVNULL
  )
  deadline = time.monotonic() + 180
  while not (killed / "checkpoints" / str(KILL_AT)).is_dir():
    assert process.poll() is None, "the run ended before it could be killed"
    assert time.monotonic() < deadline, "no checkpoint within 180 s"
    time.sleep(0.05)
  process.send_signal(signal.SIGKILL)
  process.wait()
  assert uninterrupted.wait(timeout=180) == 0
  steps_left = _final_state(killed)[0]
  assert steps_left < trainer.SMOKE["steps"]  # it really stopped early

  resumed = subprocess.run(
    _command(killed), cwd=tmp_path, env=_env(), capture_output=True, text=True
  )
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert f"Resumed from the checkpoint of step {steps_left}" in resumed.stderr

  # The uninterrupted run wrote what the README promises.
  for name in ("scores.json", "scores.png"):
    assert (whole / name).stat().st_size > 0
  assert sorted(p.name for p in (whole / "checkpoints").iterdir()) == ["4", "6"]
  records = _records(whole)
  assert [r["step"] for r in records] == [0, 3, 6]
  assert np.isfinite(records[-1]["score/cowley2023.V4-ridge/pool/raw"])

  # Bit-identical: every parameter and Adam moment, and every record.
  step, expected = _final_state(whole)
  step_resumed, got = _final_state(killed)
  assert step == step_resumed == trainer.SMOKE["steps"]
  assert len(got) == len(expected)
  for a, b in zip(got, expected, strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert _records(killed) == records


def test_resuming_with_other_settings_is_refused(tmp_path):
  config = trainer.get_config(str(tmp_path), smoke=True)
  trainer._write_log(tmp_path, config, [])
  other = trainer.get_config(str(tmp_path), smoke=True, learning_rate=1.0)
  with pytest.raises(ValueError, match="learning_rate"):
    trainer._read_records(tmp_path, other, 2)


def test_held_out_split_keeps_every_object_on_both_sides():
  labels = np.repeat(np.array(list("abcd")), 12)
  train, held = trainer.held_out_split(labels, 4, key=jax.random.key(0))
  assert np.intersect1d(train, held).size == 0
  assert len(train) + len(held) == len(labels)
  for label in "abcd":
    assert (labels[held] == label).sum() == 4
  with pytest.raises(ValueError, match="holdout_per_object"):
    trainer.held_out_split(labels, 10, key=jax.random.key(0))
