"""The speed script runs end to end (its timings are not asserted here)."""

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_quick_speed_table(tmp_path):
  out = tmp_path / "speed.md"
  root = Path(__file__).resolve().parents[2]
  done = subprocess.run(
    [sys.executable, "-m", "benchmarks.speed", "--quick", f"--out={out}"],
    cwd=root,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert done.returncode == 0, done.stderr[-2000:]
  table = out.read_text()
  for tool in ("jaxscore f32 gcv", "sklearn RidgeCV", "himalaya numpy float32"):
    assert f"| {tool} |" in table
  assert "GFLOP/s" in table
