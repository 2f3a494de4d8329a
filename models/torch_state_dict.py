"""Reads a PyTorch ``state_dict`` file into NumPy arrays, without torch.

``torch.save`` writes one of two layouts, and both keep the tensor *structure*
in a pickle and the tensor *bytes* beside it:

* zip (torch >= 1.6): a zip archive with one top folder ``<prefix>/`` holding
  ``data.pkl`` (the pickled object), ``data/<key>`` (the raw bytes of each
  storage) and optionally ``byteorder`` (``little`` or ``big``).
* legacy (torch < 1.6): five things back to back in one stream: a pickled magic
  number, a pickled protocol version (1001), a pickled dict of system facts
  (``little_endian``, type sizes), the pickled object, a pickled list of storage
  keys, and then, for each key in that order, an 8-byte little-endian element
  count followed by the storage's raw bytes.

In the object pickle a tensor is a call
``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)``, and a
storage is a persistent id ``("storage", <storage class>, key, location,
numel[, view])``. The storage class (``torch.FloatStorage`` and so on) gives the
dtype; ``offset`` and ``stride`` count elements, so a tensor may be a strided
view of a bigger storage, and several tensors may share one storage.

Pickle can call any importable function, so it is never run with the default
class lookup here: only the handful of globals a state dict needs are resolved,
each to a harmless stand-in of ours, and any other global is refused before
anything is called.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import os
import pathlib
import pickle
import struct
import zipfile
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_ZIP_SIGNATURE = b"PK\x03\x04"

_STORAGE_DTYPES = {
  "FloatStorage": np.dtype(np.float32),
  "DoubleStorage": np.dtype(np.float64),
  "HalfStorage": np.dtype(np.float16),
  "BFloat16Storage": np.dtype(ml_dtypes.bfloat16),
  "LongStorage": np.dtype(np.int64),
  "IntStorage": np.dtype(np.int32),
  "ShortStorage": np.dtype(np.int16),
  "CharStorage": np.dtype(np.int8),
  "ByteStorage": np.dtype(np.uint8),
  "BoolStorage": np.dtype(np.bool_),
}


class _FormatError(Exception):
  """The bytes do not follow the layout; turned into a ValueError with the path."""


@dataclasses.dataclass(frozen=True)
class _StorageType:
  """Stands in for a ``torch.<Name>Storage`` class in the pickle."""

  name: str
  dtype: np.dtype


@dataclasses.dataclass(eq=False)
class _Storage:
  """A flat buffer of ``numel`` elements; ``data`` is filled after unpickling.

  A legacy storage may be a view of ``root`` starting ``root_offset`` elements
  in; then its data is cut from the root's.
  """

  key: str
  dtype: np.dtype
  numel: int
  root: _Storage | None = None
  root_offset: int = 0
  data: np.ndarray | None = None


@dataclasses.dataclass(frozen=True, eq=False)
class _TensorRef:
  """A tensor still to be cut from its storage once the bytes are read."""

  storage: _Storage
  offset: int
  shape: tuple[int, ...]
  stride: tuple[int, ...]


def _rebuild_tensor(storage, storage_offset, size, stride, *_):
  """Stand-in for ``torch._utils._rebuild_tensor{,_v2}``."""
  if not isinstance(storage, _Storage):
    raise _FormatError(f"a tensor's storage is a {type(storage).__name__}.")
  return _TensorRef(storage, int(storage_offset), tuple(size), tuple(stride))


def _rebuild_parameter(data, *_):
  """Stand-in for ``torch._utils._rebuild_parameter``: a parameter is its data."""
  return data


_SAFE_GLOBALS = {
  ("collections", "OrderedDict"): collections.OrderedDict,
  ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
  ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
  ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
  ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
  **{
    ("torch", name): _StorageType(name, dtype)
    for name, dtype in _STORAGE_DTYPES.items()
  },
}


class _Unpickler(pickle.Unpickler):
  """Resolves only ``_SAFE_GLOBALS`` and turns persistent ids into storages."""

  def __init__(self, file, storages: dict[str, _Storage]):
    super().__init__(file)
    self._storages = storages

  def find_class(self, module, name):
    try:
      return _SAFE_GLOBALS[(module, name)]
    except KeyError:
      raise pickle.UnpicklingError(
        f"it refers to the global {module}.{name}, which a tensor state dict "
        "does not need and which is refused rather than imported."
      ) from None

  def persistent_load(self, pid):
    if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
      raise _FormatError(f"unexpected persistent id {pid!r}.")
    storage_type, key, numel = pid[1], str(pid[2]), pid[4]
    if not isinstance(storage_type, _StorageType):
      raise _FormatError(f"storage {key!r} has type {storage_type!r}.")
    view = pid[5] if len(pid) == 6 else None
    root = self._storage(key, storage_type.dtype, numel)
    if view is None:
      return root
    view_key, view_offset, view_numel = view
    return self._storage(
      str(view_key), storage_type.dtype, view_numel, root, view_offset
    )

  def _storage(self, key, dtype, numel, root=None, root_offset=0) -> _Storage:
    """The storage for ``key``, made on first sight and checked thereafter."""
    if key not in self._storages:
      self._storages[key] = _Storage(key, dtype, int(numel), root, int(root_offset))
    storage = self._storages[key]
    if storage.dtype != dtype or storage.numel != numel:
      raise _FormatError(
        f"storage {key!r} is declared both as {storage.numel} {storage.dtype} "
        f"and as {numel} {dtype}."
      )
    return storage


def _read_zip(data: bytes) -> tuple[object, dict[str, _Storage]]:
  """Unpickles a zip-format file and fills every storage from its record."""
  with zipfile.ZipFile(io.BytesIO(data)) as archive:
    names = set(archive.namelist())
    pickles = [
      name for name in names if name.count("/") == 1 and name.endswith("/data.pkl")
    ]
    if len(pickles) != 1:
      raise _FormatError(
        f"expected one '<prefix>/data.pkl' record, found {sorted(pickles)}."
      )
    prefix = pickles[0][: -len("data.pkl")]
    byteorder = "little"
    if prefix + "byteorder" in names:
      byteorder = archive.read(prefix + "byteorder").decode("ascii").strip()
    if byteorder not in ("little", "big"):
      raise _FormatError(f"byteorder record says {byteorder!r}.")
    storages: dict[str, _Storage] = {}
    obj = _Unpickler(io.BytesIO(archive.read(pickles[0])), storages).load()
    for key, storage in storages.items():
      record = f"{prefix}data/{key}"
      if record not in names:
        raise _FormatError(f"storage {key!r} has no record {record!r}.")
      raw = archive.read(record)
      if len(raw) != storage.numel * storage.dtype.itemsize:
        raise _FormatError(
          f"record {record!r} has {len(raw)} bytes, but storage {key!r} declares "
          f"{storage.numel} elements of {storage.dtype.itemsize} bytes."
        )
      storage.data = _decode(raw, storage.dtype, byteorder)
  return obj, storages


def _read_legacy(data: bytes) -> tuple[object, dict[str, _Storage]]:
  """Unpickles a legacy-format file and reads the storages that follow it."""
  stream = io.BytesIO(data)
  magic = _Unpickler(stream, {}).load()
  if magic != _LEGACY_MAGIC:
    raise _FormatError(
      "it is neither a zip archive nor a legacy PyTorch file (the first pickle "
      f"is {magic!r}, not the magic number)."
    )
  protocol = _Unpickler(stream, {}).load()
  if protocol != _LEGACY_PROTOCOL:
    raise _FormatError(f"legacy protocol version is {protocol!r}, expected 1001.")
  sys_info = _Unpickler(stream, {}).load()
  if not isinstance(sys_info, dict):
    raise _FormatError(f"the system-info record is a {type(sys_info).__name__}.")
  byteorder = "little" if sys_info.get("little_endian", True) else "big"
  storages: dict[str, _Storage] = {}
  obj = _Unpickler(stream, storages).load()
  keys = _Unpickler(stream, {}).load()
  if not isinstance(keys, list) or sorted(map(str, keys)) != sorted(
    key for key, storage in storages.items() if storage.root is None
  ):
    raise _FormatError(
      "the storage-key list does not match the storages in the object."
    )
  for key in map(str, keys):
    storage = storages[key]
    header = stream.read(8)
    if len(header) != 8:
      raise _FormatError(f"the file ends before the size of storage {key!r}.")
    (count,) = struct.unpack("<q", header)
    if count != storage.numel:
      raise _FormatError(
        f"storage {key!r} is stored with {count} elements but declared with "
        f"{storage.numel}."
      )
    nbytes = count * storage.dtype.itemsize
    raw = stream.read(nbytes)
    if len(raw) != nbytes:
      raise _FormatError(
        f"the file ends inside storage {key!r}, after {len(raw)} of its {nbytes} bytes."
      )
    storage.data = _decode(raw, storage.dtype, byteorder)
  for storage in storages.values():
    if storage.root is not None:
      end = storage.root_offset + storage.numel
      if storage.root_offset < 0 or end > storage.root.numel:
        raise _FormatError(
          f"view {storage.key!r} spans elements {storage.root_offset}:{end} of "
          f"storage {storage.root.key!r}, which has {storage.root.numel}."
        )
      storage.data = storage.root.data[storage.root_offset : end]
  return obj, storages


def _decode(raw: bytes, dtype: np.dtype, byteorder: str) -> np.ndarray:
  """Raw storage bytes as a flat native-endian array."""
  order = "<" if byteorder == "little" else ">"
  return np.frombuffer(raw, dtype.newbyteorder(order)).astype(dtype)


def _materialise(ref: _TensorRef) -> np.ndarray:
  """Cuts a contiguous array of ``ref.shape`` out of its storage."""
  storage, shape, stride = ref.storage, ref.shape, ref.stride
  if len(shape) != len(stride) or min((*shape, *stride, ref.offset), default=0) < 0:
    raise _FormatError(
      f"a tensor has size {shape}, stride {stride}, offset {ref.offset}."
    )
  if 0 in shape:
    return np.zeros(shape, storage.dtype)
  last = ref.offset + sum((n - 1) * s for n, s in zip(shape, stride, strict=True))
  if last >= storage.numel:
    raise _FormatError(
      f"a tensor of size {shape}, stride {stride} at offset {ref.offset} reaches "
      f"element {last} of storage {storage.key!r}, which has {storage.numel}."
    )
  flat = storage.data[ref.offset :]
  itemsize = storage.dtype.itemsize
  view = np.lib.stride_tricks.as_strided(
    flat, shape, tuple(s * itemsize for s in stride), writeable=False
  )
  return np.array(view, order="C")


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """Reads a file written by ``torch.save(module.state_dict(), path)``.

  Both the zip layout and the legacy one are read, without importing torch
  and without running any code from the file.

  Args:
    path: the ``.pt`` or ``.pth`` file.

  Returns:
    ``{parameter name: array}`` in file order, each array C-contiguous with
    the tensor's shape (PyTorch layout, e.g. OIHW for convolutions) and dtype.

  Raises:
    FileNotFoundError: no file at ``path``.
    ValueError: the file is truncated or corrupt, refers to a global other
      than tensor rebuilders, storage classes and ``OrderedDict``, or holds
      something other than a flat mapping from names to tensors.
  """
  data = pathlib.Path(path).read_bytes()
  try:
    if data.startswith(_ZIP_SIGNATURE):
      obj, _ = _read_zip(data)
    else:
      obj, _ = _read_legacy(data)
    if not isinstance(obj, Mapping):
      raise _FormatError(
        f"it holds an object of type {type(obj).__name__}, not a mapping."
      )
    state_dict = {}
    for name, value in obj.items():
      if not isinstance(value, _TensorRef):
        raise _FormatError(
          f"entry {name!r} is of type {type(value).__name__}, not a tensor."
        )
      state_dict[str(name)] = _materialise(value)
  except (
    _FormatError,
    pickle.UnpicklingError,
    EOFError,
    zipfile.BadZipFile,
    struct.error,
    UnicodeDecodeError,
    TypeError,
    ValueError,
    KeyError,
    IndexError,
  ) as error:
    raise ValueError(
      f"Could not read {os.fspath(path)!r} as a PyTorch state dict: {error}"
    ) from error
  return state_dict


# --- from a state dict to the Flax variables of a zoo model --------------------

# Flax leaf name -> PyTorch tensor name, per variable collection. Any other
# parameter (a ViT's ``class_token``, ``in_proj_weight`` ...) keeps its name
# and its layout.
_TORCH_LEAF_NAMES = {
  "params": {"kernel": "weight", "scale": "weight", "bias": "bias"},
  "batch_stats": {"mean": "running_mean", "var": "running_var"},
}
# Buffers PyTorch saves that have no Flax counterpart.
_IGNORED_SUFFIXES = ("num_batches_tracked",)


def _torch_leaf(path: tuple[str, ...], ndim: int) -> tuple[str, tuple[int, ...]]:
  """The PyTorch name of the Flax variable at ``path``, and the axis order.

  ``path`` is (collection, module, ..., leaf), with module names that are
  PyTorch module paths. Returns the tensor name and the permutation that turns
  the PyTorch tensor into the Flax array: convolution kernels OIHW -> HWIO,
  linear kernels (out, in) -> (in, out), everything else unchanged.
  """
  collection, *modules, leaf = path
  names = _TORCH_LEAF_NAMES.get(collection)
  if names is None:
    raise ValueError(f"Variable collection {collection!r} has no PyTorch layout.")
  torch_leaf = names.get(leaf, leaf)
  order = tuple(range(ndim))
  if collection == "params" and leaf == "kernel":
    order = {4: (2, 3, 1, 0), 2: (1, 0)}.get(ndim, order)
  return ".".join([*modules, torch_leaf]), order


def _strip_data_parallel(state_dict: Mapping[str, np.ndarray]) -> dict:
  """Drops the ``module.`` prefix ``DataParallel`` puts on every name."""
  if state_dict and all(name.startswith("module.") for name in state_dict):
    return {name[len("module.") :]: value for name, value in state_dict.items()}
  return dict(state_dict)


def variables_from_torch(
  state_dict: Mapping[str, np.ndarray], target, *, architecture: str = "the model"
) -> dict:
  """A PyTorch ``state_dict`` as the Flax variables shaped like ``target``.

  Flax module names in the zoo are PyTorch module paths, so the tensor for the
  Flax variable ``params/layer1.0/conv1/kernel`` is ``layer1.0.conv1.weight``.
  Kernels are permuted (convolutions OIHW -> HWIO, linear layers transposed),
  batch norm's ``weight``/``bias`` become ``scale``/``bias`` and its
  ``running_mean``/``running_var`` the ``batch_stats`` ``mean``/``var``;
  ``num_batches_tracked`` counters are ignored, and a ``module.`` prefix on
  every name (from ``DataParallel``) is stripped.

  Args:
    state_dict: ``{PyTorch name: array}``, e.g. from ``load_state_dict``.
    target: the model's variables, or their ``jax.ShapeDtypeStruct``s; gives
      the structure, the shapes and the dtypes.
    architecture: name used in error messages.

  Returns:
    A tree like ``target`` of arrays of ``target``'s dtypes.

  Raises:
    ValueError: a tensor is missing, has the wrong shape, or is left unused.
  """
  state_dict = _strip_data_parallel(state_dict)
  used = set()

  def convert(key_path, leaf):
    path = tuple(str(key.key) for key in key_path)
    name, order = _torch_leaf(path, len(leaf.shape))
    flax_path = "/".join(path)
    if name not in state_dict:
      raise ValueError(
        f"The state dict has no {name!r}, which {architecture} needs for "
        f"{flax_path} (PyTorch shape "
        f"{tuple(leaf.shape[i] for i in np.argsort(order))})."
      )
    value = np.asarray(state_dict[name])
    expected = tuple(leaf.shape[i] for i in np.argsort(order))
    if value.shape != expected:
      raise ValueError(
        f"State dict tensor {name!r} (for {flax_path}) has shape {value.shape}, "
        f"but {architecture} expects {expected}."
      )
    used.add(name)
    return jnp.asarray(np.transpose(value, order).astype(leaf.dtype))

  variables = jax.tree_util.tree_map_with_path(convert, target)
  unused = sorted(
    name for name in set(state_dict) - used if not name.endswith(_IGNORED_SUFFIXES)
  )
  if unused:
    raise ValueError(
      f"The state dict has {len(unused)} tensors {architecture} does not use, "
      f"e.g. {unused[:5]}; is it the weight file of another architecture?"
    )
  return variables
