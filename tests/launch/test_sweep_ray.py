"""The sweep on a local Ray cluster writes the rows a sweep in one process does.

The cluster is real: ``ray start --head --block`` in a session of its own,
bound to loopback, stopped at the end by signalling that process and then
every process left in its session, by id (``ray stop`` would stop every Ray
process of this user on the machine, other people's clusters included).
"""

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from jaxscore import store as store_lib

ROOT = Path(__file__).resolve().parents[2]
RAY = Path(sys.executable).with_name("ray")
BENCHMARKS = "kriegeskorte2008.mIT-rsa,cowley2023.V4-pls"
LAYERS = ("conv3", "pool")
# On Linux Ray swaps a loopback address for the host's outward one and binds
# its servers to every interface; with this set, as on a laptop, it keeps to
# 127.0.0.1.
LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
# Run a script as `python -m`, with ray made unimportable first.
WITHOUT_RAY = (
  "import runpy, sys; sys.modules['ray'] = None; "
  "runpy.run_module(sys.argv.pop(1), run_name='__main__', alter_sys=True)"
)


def _require_ray():
  if importlib.util.find_spec("ray") is not None and RAY.is_file():
    return
  reason = f'ray is not installed beside {sys.executable} (pip install -e ".[ray]")'
  if os.environ.get("CI"):
    pytest.fail(f"{reason}; CI must run the Ray sweep test.")
  pytest.skip(reason)


def _env() -> dict[str, str]:
  """This process's environment (with conftest's mirror and cache) for Ray."""
  return dict(os.environ, JAX_PLATFORMS="cpu", RAY_USAGE_STATS_ENABLED="0", **LOOPBACK)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _session_pids(session: int) -> list[int]:
  """Live (non-zombie) processes in ``session``."""
  pids = []
  for entry in os.listdir("/proc"):
    if not entry.isdigit():
      continue
    pid = int(entry)
    try:
      state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
      if os.getsid(pid) == session and state != "Z":
        pids.append(pid)
    except (ProcessLookupError, FileNotFoundError, PermissionError):
      continue  # gone meanwhile, or not ours
  return pids


@contextlib.contextmanager
def _ray_cluster(log: Path):
  """A one-node Ray cluster on loopback; yields its address."""
  port = _free_port()
  # Ray's socket paths must stay under 108 bytes: a short folder of our own.
  temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
  command = [
    str(RAY),
    "start",
    "--head",
    "--block",
    f"--port={port}",
    "--node-ip-address=127.0.0.1",
    "--num-cpus=2",
    "--include-dashboard=false",
    "--disable-usage-stats",
    "--object-store-memory=100000000",
    f"--temp-dir={temp}",
  ]
  with open(log, "w") as out:
    head = subprocess.Popen(
      command, env=_env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )
  try:
    deadline = time.monotonic() + 120
    while "Ray runtime started" not in log.read_text():
      if head.poll() is not None or time.monotonic() > deadline:
        raise RuntimeError(f"ray start did not come up:\n{log.read_text()}")
      time.sleep(0.2)
    yield f"127.0.0.1:{port}"
  finally:
    _stop(head)
    shutil.rmtree(temp, ignore_errors=True)


def _stop(head: subprocess.Popen):
  head.send_signal(signal.SIGTERM)  # `ray start --block` stops its cluster
  with contextlib.suppress(subprocess.TimeoutExpired):
    head.wait(timeout=60)
  deadline = time.monotonic() + 30
  while _session_pids(head.pid) and time.monotonic() < deadline:
    time.sleep(0.2)
  for pid in _session_pids(head.pid):
    with contextlib.suppress(ProcessLookupError):
      os.kill(pid, signal.SIGKILL)
  if head.poll() is None:
    head.kill()
    head.wait()
  time.sleep(0.5)
  left = _session_pids(head.pid)
  assert not left, f"Ray processes {left} outlived the cluster"


def _sweep(
  tmp_path: Path, name: str, *flags: str, ray: bool, benchmarks=BENCHMARKS
) -> list[str]:
  python = [sys.executable, "-m"] if ray else [sys.executable, "-c", WITHOUT_RAY]
  return [
    *python,
    "launch.sweep",
    "--models=tiny_cnn",
    f"--benchmarks={benchmarks}",
    f"--layers={','.join(LAYERS)}",
    f"--store={tmp_path / name / 'store.sqlite'}",
    f"--cache_dir={tmp_path / name / 'cache'}",
    *flags,
  ]


def _by_key(path: Path) -> dict[tuple, dict]:
  with store_lib.Store(path) as store:
    return {tuple(row[c] for c in store_lib.KEY_COLUMNS): row for row in store.rows()}


@pytest.mark.slow
def test_a_sweep_on_a_local_ray_cluster_writes_what_one_process_writes(tmp_path):
  _require_ray()
  # The reference, in one process with ray unimportable, runs while the
  # cluster starts.
  here = subprocess.Popen(
    _sweep(tmp_path, "here", ray=False),
    cwd=ROOT,
    env=_env(),
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
  )
  try:
    with _ray_cluster(tmp_path / "ray.log") as address:
      # A task that fails (its cache folder is a file) is reported by pair.
      (tmp_path / "broken").mkdir()
      (tmp_path / "broken" / "cache").write_text("")
      broken = subprocess.run(
        _sweep(
          tmp_path,
          "broken",
          f"--ray_address={address}",
          ray=True,
          benchmarks="kriegeskorte2008.mIT-rsa",
        ),
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
      )
      on_ray = subprocess.run(
        _sweep(tmp_path, "ray", f"--ray_address={address}", ray=True),
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
      )
    output, _ = here.communicate(timeout=600)
  finally:
    if here.poll() is None:
      here.kill()
      here.wait()
  assert broken.returncode != 0
  assert "Scoring tiny_cnn on kriegeskorte2008.mIT-rsa failed" in broken.stderr
  assert "FileExistsError" in broken.stderr, broken.stderr
  assert on_ray.returncode == 0, on_ray.stdout + on_ray.stderr
  assert here.returncode == 0, output
  n_rows = 2 * len(LAYERS)
  assert f"{n_rows} rows written" in on_ray.stdout
  assert f"{n_rows} rows written" in output

  expected = _by_key(tmp_path / "here" / "store.sqlite")
  found = _by_key(tmp_path / "ray" / "store.sqlite")
  assert len(expected) == n_rows
  assert found.keys() == expected.keys()
  for key, row in expected.items():
    for column in ("raw", "error", "ceiling", "ceiled", "n_features"):
      assert found[key][column] == row[column], (key, column)
    assert found[key]["details"] == row["details"], key
  # both benchmarks' activations were computed (on the workers) and cached
  cache = tmp_path / "ray" / "cache"
  assert len([p for p in cache.iterdir() if not p.name.startswith(".")]) == 2


def test_ray_address_without_ray_installed_says_how_to_install_it(tmp_path):
  command = _sweep(tmp_path, "none", "--ray_address=127.0.0.1:1", ray=False)
  done = subprocess.run(command, cwd=ROOT, env=_env(), capture_output=True, text=True)
  assert done.returncode != 0
  assert 'pip install -e ".[ray]"' in done.stderr, done.stderr
  assert "--ray_address" in done.stderr
  assert not (tmp_path / "none").exists()  # refused before anything was opened
