"""Reading stimulus images from zips."""

import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from jaxscore.data.stimuli import read_zip_images


def _png(value):
  buffer = io.BytesIO()
  Image.fromarray(np.full((3, 4, 3), value, np.uint8)).save(buffer, format="PNG")
  return buffer.getvalue()


def test_images_are_read_by_base_name_from_any_folder(tmp_path):
  with zipfile.ZipFile(tmp_path / "s.zip", "w") as archive:
    archive.writestr("a/one.png", _png(1))
    archive.writestr("b/two.png", _png(2))
  one, two = read_zip_images(tmp_path / "s.zip", ["one.png", "two.png"])
  assert one[0, 0].tolist() == [1, 1, 1] and two.shape == (3, 4, 3)


def test_a_name_in_two_folders_is_an_error_naming_both(tmp_path):
  with zipfile.ZipFile(tmp_path / "s.zip", "w") as archive:
    archive.writestr("a/one.png", _png(1))
    archive.writestr("b/one.png", _png(2))
    archive.writestr("b/two.png", _png(3))
  with pytest.raises(ValueError, match=r"'one\.png': a/one\.png, b/one\.png"):
    read_zip_images(tmp_path / "s.zip", ["one.png", "two.png"])
  # a clash among images not asked for is no ambiguity
  (two,) = read_zip_images(tmp_path / "s.zip", ["two.png"])
  assert two[0, 0].tolist() == [3, 3, 3]


def test_an_undecodable_image_names_the_zip_and_member(tmp_path):
  with zipfile.ZipFile(tmp_path / "s.zip", "w") as archive:
    archive.writestr("imgs/good.png", _png(1))
    archive.writestr("imgs/bad.png", b"not an image")
  with pytest.raises(ValueError, match=r"'imgs/bad\.png' in .*s\.zip cannot be"):
    read_zip_images(tmp_path / "s.zip", ["good.png", "bad.png"])
