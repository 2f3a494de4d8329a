"""Test-wide settings: 64-bit JAX so that float64 references are exact."""

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

import jax
import pytest

jax.config.update("jax_enable_x64", True)

# Tests read the real data from the shared mirror beside the checkout and keep
# their cache out of the user's home.
_SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
if _SHARED_DATA.is_dir():
  os.environ.setdefault("JAXSCORE_MIRROR", str(_SHARED_DATA))


def pytest_configure(config):
  # One cache per test session unless the caller chose one; removed at the end.
  if "JAXSCORE_CACHE" not in os.environ:
    config._jaxscore_cache = tempfile.mkdtemp(prefix="jaxscore-test-cache-")
    os.environ["JAXSCORE_CACHE"] = config._jaxscore_cache


def pytest_unconfigure(config):
  cache = getattr(config, "_jaxscore_cache", None)
  if cache is not None:
    shutil.rmtree(cache, ignore_errors=True)


class JaxEvents(list):
  """Names of the JAX trace and compile events seen inside a ``jax_events`` block."""

  @property
  def traces(self) -> int:
    return self.count("/jax/core/compile/jaxpr_trace_duration")

  @property
  def compiles(self) -> int:
    return self.count("/jax/core/compile/backend_compile_duration")


_recording: JaxEvents | None = None


def _listen(name, duration, **kwargs):
  del duration, kwargs
  if _recording is not None:
    _recording.append(name)


jax.monitoring.register_event_duration_secs_listener(_listen)


@contextlib.contextmanager
def _record():
  global _recording
  _recording = JaxEvents()
  try:
    yield _recording
  finally:
    _recording = None


@pytest.fixture
def jax_events():
  """``with jax_events() as events:`` collects the block's traces and compiles."""
  return _record


def _finish(processes, timeout: float) -> list[str]:
  """Waits for every process, kills any left, asserts each exited 0; their logs."""
  try:
    logs = [p.communicate(timeout=timeout)[0] for p in processes]
  finally:
    for p in processes:
      p.kill()
  for p, log in zip(processes, logs, strict=True):
    assert p.returncode == 0, log[-3000:]
  return logs


@pytest.fixture
def finish_processes():
  """``finish_processes(popens, timeout)``: the logs of processes that all ran
  to success (started with ``stdout=PIPE, stderr=STDOUT, text=True``)."""
  return _finish
