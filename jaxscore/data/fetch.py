"""Data files by name, pinned to an upstream commit and a sha256.

Every file jaxscore reads is listed in ``FILES`` with the URL it comes from
(an upstream repository at a fixed commit) and its sha256. ``fetch(name)``
returns a local path to a verified copy, looking in this order:

1. the cache folder (``$JAXSCORE_CACHE``, default ``~/.cache/jaxscore``);
2. the mirror folder (``$JAXSCORE_MIRROR``), a read-only tree laid out as
   ``<dataset>/<file>``, for machines without internet (CI and the tests point
   it at the shared data folder);
3. the upstream URL.

A file is only ever placed in the cache after its hash has been checked, and
it is written to a temporary name first and renamed into place, so the cache
never holds a half-written or corrupt file. A hash mismatch raises
``ChecksumError`` naming the file and both hashes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path

CACHE_ENV = "JAXSCORE_CACHE"
MIRROR_ENV = "JAXSCORE_MIRROR"

_COWLEY = (
  "https://raw.githubusercontent.com/cowleygroup/V4_compact_models/"
  "f4552ad9d34a466ebc66658f72a08a8e5038f1cf/data_V4_responses/"
)
_RSA = (
  "https://raw.githubusercontent.com/rsagroup/rsatoolbox/"
  "f1f83cadb7243492a1aae7460466e0f0140b20ac/demos/92imageData/"
)


class ChecksumError(ValueError):
  """A file's content does not match its pinned sha256."""


@dataclasses.dataclass(frozen=True)
class DataFile:
  """One pinned data file: ``<dataset>/<filename>`` in cache and mirror."""

  dataset: str
  filename: str
  url: str
  sha256: str

  @property
  def key(self) -> str:
    return f"{self.dataset}/{self.filename}"


def _cowley(filename: str, upstream: str, sha256: str) -> DataFile:
  return DataFile("cowley2023_v4", filename, _COWLEY + upstream, sha256)


def _rsa(filename: str, sha256: str) -> DataFile:
  return DataFile("kriegeskorte2008_92images", filename, _RSA + filename, sha256)


_FILES = (
  _cowley(
    "responses_raw_210325.npy",
    "responses_raw/responses_210325.npy",
    "4008dbbf31a47d9b1b8d8da609f4a7a3433c7071f0e45c611c220b217dd75b76",
  ),
  _cowley(
    "responses_repeat_averaged_210325.npy",
    "responses_repeat_averaged/responses_210325.npy",
    "555e67037182611969ab90da291dcc39601de4411f651a64ad60e90572cf59d3",
  ),
  _cowley(
    "responses_repeat_averaged_190923.npy",
    "responses_repeat_averaged/responses_190923.npy",
    "741672d36541ce39930c8a3b5bd1cfd33c187aa47b1549c9c5569bc21aa97a28",
  ),
  _cowley(
    "responses_repeat_averaged_201025.npy",
    "responses_repeat_averaged/responses_201025.npy",
    "f729f3dc0d29aa38bd380c0da9e39aba916f9e2580949929b65d1714e7217a8a",
  ),
  _cowley(
    "responses_repeat_averaged_210225.npy",
    "responses_repeat_averaged/responses_210225.npy",
    "853f196247504fa2526b507f56ee5237711ed166f295f7cb23ec5441a7bf789b",
  ),
  _cowley(
    "responses_repeat_averaged_210322.npy",
    "responses_repeat_averaged/responses_210322.npy",
    "1d643594633c7ad6d5281147bf1742275135507c8b283550e00e7028c65a5373",
  ),
  _cowley(
    "images_210325.zip",
    "images/images_210325.zip",
    "992774eca3508a2ad01accb1a31f5f3e3d90248c49f4eec314f2a915a263e454",
  ),
  _cowley(
    "images_190923.zip",
    "images/images_190923.zip",
    "e99a4df1c7476bdc4d565ff4408bc421976ecc3a22c41af6bfd0cfbddb508c0c",
  ),
  _cowley(
    "images_201025.zip",
    "images/images_201025.zip",
    "3abb63679107665eab7220bdeaf7863832a1df943bf3d7792501f5082a55b2e8",
  ),
  _cowley(
    "images_210225.zip",
    "images/images_210225.zip",
    "79bfb1066949a7f7bbd3c632ab420c2230b966b80cade76593d8745aea49b7f6",
  ),
  _cowley(
    "images_210322.zip",
    "images/images_210322.zip",
    "a72f357c73381fc6e496403820b38abe38c78b92f6d1c0b7153d6fe6d3986c32",
  ),
  _rsa(
    "Kriegeskorte_Neuron2008_supplementalData.mat",
    "06f21214399a5d43dc264eed19a7f4b8daf11c8622a59eec3e106064ce5e3504",
  ),
  _rsa(
    "92_brainRDMs.mat",
    "1743f90a15e895798a94318649e80e1123a7e5943a1703fa1dd7c31ea5780b7c",
  ),
  _rsa(
    "92_behavRDMs.mat",
    "7a8e118c144c3840adeeeef6ea0706a0be2b3e80df719af15fbb56fc62562f5f",
  ),
)
FILES: dict[str, DataFile] = {f.key: f for f in _FILES}


def cache_dir() -> Path:
  """The cache folder: ``$JAXSCORE_CACHE`` or ``~/.cache/jaxscore``."""
  root = os.environ.get(CACHE_ENV)
  return Path(root) if root else Path.home() / ".cache" / "jaxscore"


def mirror_dir() -> Path | None:
  """The mirror folder from ``$JAXSCORE_MIRROR``, or None when unset."""
  root = os.environ.get(MIRROR_ENV)
  return Path(root) if root else None


def sha256_of(path: Path) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def _get(key: str) -> DataFile:
  if key not in FILES:
    raise KeyError(
      f"Unknown data file {key!r}; known files are: {', '.join(sorted(FILES))}."
    )
  return FILES[key]


def fetch(key: str) -> Path:
  """Returns the path of a verified local copy of data file ``key``.

  Args:
    key: ``"<dataset>/<filename>"``, one of ``FILES``.

  Raises:
    KeyError: ``key`` is not a known file.
    ChecksumError: the mirror's or the download's content has another hash.
    FileNotFoundError: the file is in neither cache nor mirror and the
      download failed.
  """
  entry = _get(key)
  target = cache_dir() / entry.dataset / entry.filename
  try:
    target.parent.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise OSError(
      f"Cannot create the cache folder {target.parent}; set ${CACHE_ENV} to a "
      f"writable folder ({e})."
    ) from e
  if target.is_file():
    found = sha256_of(target)
    if found == entry.sha256:
      return target
    # A cache entry can only be wrong if someone edited it by hand; it is not
    # trusted and is replaced below.
    target.unlink()

  mirror = mirror_dir()
  if mirror is not None and not mirror.is_dir():
    raise FileNotFoundError(
      f"${MIRROR_ENV} is {str(mirror)!r}, which is not a folder; point it at a "
      "folder holding <dataset>/<file> copies, or unset it to download."
    )
  if mirror is not None and (mirror / entry.dataset / entry.filename).is_file():
    source = mirror / entry.dataset / entry.filename

    def copy(out):
      with open(source, "rb") as f:
        shutil.copyfileobj(f, out)

    _install(target, entry, copy, origin=str(source))
    return target

  def download(out):
    with urllib.request.urlopen(entry.url, timeout=60) as response:
      shutil.copyfileobj(response, out)

  try:
    _install(target, entry, download, origin=entry.url)
  except ChecksumError:
    raise
  except OSError as e:
    where = f"the mirror {mirror} nor " if mirror is not None else ""
    raise FileNotFoundError(
      f"Data file {key!r} is in neither {where}the cache {cache_dir()}, and "
      f"downloading {entry.url} failed: {e}. Set ${MIRROR_ENV} to a folder "
      "holding <dataset>/<file> copies to work offline."
    ) from e
  return target


def _install(target: Path, entry: DataFile, write, *, origin: str) -> None:
  """Writes via ``write(fileobj)`` to a temporary file, verifies, renames."""
  target.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{entry.filename}.")
  try:
    with os.fdopen(fd, "wb") as out:
      write(out)
    found = sha256_of(Path(tmp))
    if found != entry.sha256:
      raise ChecksumError(
        f"Data file {entry.key!r} from {origin} has sha256 {found}, expected "
        f"{entry.sha256}; the copy is corrupt or not the pinned version and "
        "was not cached."
      )
    os.replace(tmp, target)
  finally:
    if os.path.exists(tmp):
      os.unlink(tmp)
