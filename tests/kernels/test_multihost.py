"""Resamples spread over two processes (JAX's multi-process runtime) give the
bits of one process: two local processes, two fake CPU devices each, joined
by ``jax.distributed.initialize`` over loopback."""

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np

from jaxscore.kernels import bootstrap, refit, split_half_masks

ROOT = Path(__file__).resolve().parents[2]
N_BOOT, CHUNK = 20, 4  # 4 global devices x 2 blocks: several chunks each

_PROCESS_SCRIPT = """
import os, sys
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
import jax
jax.config.update("jax_enable_x64", True)
process_id, port, inputs, outputs, n_boot, chunk = sys.argv[1:]
n_boot, chunk = int(n_boot), int(chunk)
jax.distributed.initialize(
  f"127.0.0.1:{port}", num_processes=2, process_id=int(process_id))
import numpy as np
from jaxscore.kernels import bootstrap, refit
assert jax.process_count() == 2 and len(jax.devices()) == 4, jax.devices()
d = np.load(inputs)
key = jax.random.key(7)
score = bootstrap.test_set_bootstrap(d["predictions"], d["targets"],
  n_boot=n_boot, key=key, resample_neuroids=True, chunk_size=chunk)
difference = bootstrap.paired_difference(d["predictions"], d["other"],
  d["targets"], n_boot=n_boot, key=key, chunk_size=chunk)
ceiling = bootstrap.ceiling_bootstrap(d["trials"], d["masks"],
  n_boot=n_boot, key=key, resample_neuroids=True, chunk_size=chunk)
refits = refit.refit_bootstrap(d["X"], d["Y"], d["train"], d["test"],
  d["alphas"], n_boot=6, key=key, chunk_size=1)
np.savez(outputs, score=np.asarray(score), difference=np.asarray(difference),
  ceiling=np.asarray(ceiling), refits=np.asarray(refits))
"""


def _inputs(rng):
  shape = (3, 10, 6)  # splits, test stimuli, neuroids
  targets = rng.standard_normal(shape)
  predictions = targets + rng.standard_normal(shape)
  other = targets + 2 * rng.standard_normal(shape)
  signal = rng.standard_normal((30, 6))
  trials = signal + 0.8 * rng.standard_normal((6, 30, 6))  # reps, stimuli, neuroids
  trials[5, :4] = np.nan  # four stimuli shown five times only
  masks = np.asarray(split_half_masks(6, n_splits=4, key=jax.random.key(3)))
  X = rng.standard_normal((40, 8))
  Y = X @ rng.standard_normal((8, 5)) + rng.standard_normal((40, 5))
  order = np.stack([rng.permutation(40) for _ in range(3)])
  return dict(
    predictions=predictions.astype(np.float32),
    other=other.astype(np.float32),
    targets=targets.astype(np.float32),
    trials=trials.astype(np.float32),
    masks=masks,
    X=X.astype(np.float32),
    Y=Y.astype(np.float32),
    train=order[:, :32],
    test=order[:, 32:],
    alphas=np.logspace(-2, 3, 6).astype(np.float32),
  )


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_give_the_bits_of_one(tmp_path, finish_processes):
  d = _inputs(np.random.default_rng(0))
  inputs = tmp_path / "in.npz"
  np.savez(inputs, **d)
  script = tmp_path / "process.py"
  script.write_text(textwrap.dedent(_PROCESS_SCRIPT))
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
  port = _free_port()
  processes = [
    subprocess.Popen(
      [
        sys.executable,
        str(script),
        str(i),
        str(port),
        str(inputs),
        str(tmp_path / f"out{i}.npz"),
        str(N_BOOT),
        str(CHUNK),
      ],
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
    )
    for i in range(2)
  ]
  finish_processes(processes, timeout=300)

  key = jax.random.key(7)
  one = {
    "score": bootstrap.test_set_bootstrap(
      d["predictions"],
      d["targets"],
      n_boot=N_BOOT,
      key=key,
      resample_neuroids=True,
      chunk_size=CHUNK,
    ),
    "difference": bootstrap.paired_difference(
      d["predictions"],
      d["other"],
      d["targets"],
      n_boot=N_BOOT,
      key=key,
      chunk_size=CHUNK,
    ),
    "ceiling": bootstrap.ceiling_bootstrap(
      d["trials"],
      d["masks"],
      n_boot=N_BOOT,
      key=key,
      resample_neuroids=True,
      chunk_size=CHUNK,
    ),
    "refits": refit.refit_bootstrap(
      d["X"],
      d["Y"],
      d["train"],
      d["test"],
      d["alphas"],
      n_boot=6,
      key=key,
      chunk_size=1,
    ),
  }
  for i in range(2):
    got = np.load(tmp_path / f"out{i}.npz")
    for name, expected in one.items():
      assert got[name].shape == np.shape(expected), name
      assert np.isfinite(got[name]).all(), name
      np.testing.assert_array_equal(got[name], expected, err_msg=name)
