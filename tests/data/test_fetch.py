import hashlib

import pytest

from jaxscore.data import fetch


@pytest.fixture
def cache(tmp_path, monkeypatch):
  root = tmp_path / "cache"
  monkeypatch.setenv(fetch.CACHE_ENV, str(root))
  return root


def _entry(monkeypatch, tmp_path, content: bytes, *, sha=None, url=None):
  """Registers a one-file dataset whose upstream is a local file:// URL."""
  upstream = tmp_path / "upstream" / "toy.bin"
  upstream.parent.mkdir(parents=True, exist_ok=True)
  upstream.write_bytes(content)
  entry = fetch.DataFile(
    "toyset",
    "toy.bin",
    url or upstream.as_uri(),
    sha or hashlib.sha256(content).hexdigest(),
  )
  monkeypatch.setitem(fetch.FILES, entry.key, entry)
  return entry


def test_real_file_from_mirror_lands_verified_in_cache(cache):
  path = fetch.fetch("cowley2023_v4/responses_repeat_averaged_210325.npy")
  assert path.parent.parent == cache
  entry = fetch.FILES["cowley2023_v4/responses_repeat_averaged_210325.npy"]
  assert fetch.sha256_of(path) == entry.sha256
  assert fetch.fetch(entry.key) == path  # second call hits the cache


def test_download_when_not_mirrored(cache, tmp_path, monkeypatch):
  monkeypatch.delenv(fetch.MIRROR_ENV, raising=False)
  entry = _entry(monkeypatch, tmp_path, b"spikes")
  path = fetch.fetch(entry.key)
  assert path.read_bytes() == b"spikes"


def test_corrupt_mirror_file_is_rejected_and_not_cached(cache, tmp_path, monkeypatch):
  mirror = tmp_path / "mirror"
  (mirror / "toyset").mkdir(parents=True)
  (mirror / "toyset" / "toy.bin").write_bytes(b"tampered")
  monkeypatch.setenv(fetch.MIRROR_ENV, str(mirror))
  entry = _entry(monkeypatch, tmp_path, b"original")
  with pytest.raises(fetch.ChecksumError) as info:
    fetch.fetch(entry.key)
  message = str(info.value)
  assert "toyset/toy.bin" in message
  assert str(mirror / "toyset" / "toy.bin") in message  # where it came from
  assert entry.sha256 in message
  assert hashlib.sha256(b"tampered").hexdigest() in message
  assert not any((cache / "toyset").iterdir())  # nothing, not even a temp file


def test_edited_cache_entry_is_replaced(cache, tmp_path, monkeypatch):
  monkeypatch.delenv(fetch.MIRROR_ENV, raising=False)
  entry = _entry(monkeypatch, tmp_path, b"good")
  path = fetch.fetch(entry.key)
  path.write_bytes(b"bad")
  assert fetch.fetch(entry.key).read_bytes() == b"good"


def test_failed_download_names_the_mirror_variable(cache, tmp_path, monkeypatch):
  monkeypatch.delenv(fetch.MIRROR_ENV, raising=False)
  entry = _entry(monkeypatch, tmp_path, b"x", url=(tmp_path / "nowhere.bin").as_uri())
  with pytest.raises(FileNotFoundError, match=fetch.MIRROR_ENV):
    fetch.fetch(entry.key)
  assert not (cache / "toyset" / "toy.bin").exists()


def test_unknown_file_lists_known_ones(cache):
  with pytest.raises(KeyError, match=r"responses_raw_210325\.npy"):
    fetch.fetch("cowley2023_v4/nope.npy")


def test_unusable_cache_and_mirror_folders_are_named(tmp_path, monkeypatch):
  blocker = tmp_path / "file"
  blocker.write_text("not a folder")
  monkeypatch.setenv(fetch.CACHE_ENV, str(blocker / "cache"))
  with pytest.raises(OSError, match=fetch.CACHE_ENV):
    fetch.fetch("cowley2023_v4/responses_raw_210325.npy")
  monkeypatch.setenv(fetch.CACHE_ENV, str(tmp_path / "cache"))
  monkeypatch.setenv(fetch.MIRROR_ENV, str(tmp_path / "no-such-mirror"))
  with pytest.raises(FileNotFoundError, match="not a folder"):
    fetch.fetch("cowley2023_v4/responses_raw_210325.npy")
