import jax.numpy as jnp
import numpy as np
import pytest

from jaxscore import activations
from jaxscore.model import VisionModel


def _image(height=10, width=10, seed=0):
  rng = np.random.default_rng(seed)
  return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_model_seeing_more_degrees_gets_a_grey_canvas():
  image = _image(10, 10)
  screen = activations.place_on_screen(image, source_degrees=4, target_degrees=8)
  assert screen.shape == (20, 20, 3)
  np.testing.assert_array_equal(screen[5:15, 5:15], image)
  border = np.ones((20, 20), bool)
  border[5:15, 5:15] = False
  assert (screen[border] == activations.GREY).all()
  # grey fraction is 1 - (1/ratio)^2
  assert border.mean() == pytest.approx(1 - (4 / 8) ** 2)


def test_model_seeing_fewer_degrees_gets_a_centre_crop():
  image = _image(12, 12)
  screen = activations.place_on_screen(image, source_degrees=12, target_degrees=6)
  np.testing.assert_array_equal(screen, image[3:9, 3:9])


def test_equal_degrees_leave_the_image_alone():
  image = _image(7, 7)
  same = activations.place_on_screen(image, source_degrees=8, target_degrees=8)
  np.testing.assert_array_equal(same, image)


def test_bad_degrees_are_named():
  with pytest.raises(ValueError, match="source_degrees"):
    activations.place_on_screen(_image(), source_degrees=0, target_degrees=8)


def _toy_model(trace_counter=None, poison=False):
  def apply(variables, images):
    if trace_counter is not None:
      trace_counter.append(images.shape)
    pooled = images.mean(axis=(1, 2)) * variables["scale"]
    if poison:
      pooled = pooled.at[1, 0].set(jnp.nan)
    return {"pixels": images, "pooled": pooled}

  return VisionModel(
    name="toy",
    apply=apply,
    variables={"scale": jnp.float32(2.0)},
    layers=("pixels", "pooled"),
    image_size=6,
    mean=(0.5, 0.5, 0.5),
    std=(0.25, 0.25, 0.25),
    visual_degrees=8,
  )


def test_preprocess_normalises_with_the_model_statistics():
  image = np.full((6, 6, 3), 51, np.uint8)  # 0.2 after scaling
  batch = activations.preprocess([image], _toy_model(), source_degrees=8)
  np.testing.assert_allclose(batch, (0.2 - 0.5) / 0.25, rtol=1e-6)


def test_extract_flattens_and_pads_without_recompiling():
  traces = []
  model = _toy_model(traces)
  images = [_image(6, 6, seed) for seed in range(5)]
  features = activations.extract(model, images, source_degrees=8, batch_size=2)
  assert features["pixels"].shape == (5, 6 * 6 * 3)
  assert features["pooled"].shape == (5, 3)
  expected = activations.preprocess(images, model, source_degrees=8)
  np.testing.assert_allclose(features["pixels"], expected.reshape(5, -1), rtol=1e-6)
  assert traces == [(2, 6, 6, 3)]  # three batches, one trace


def test_extract_names_the_layer_with_nan():
  images = [_image(6, 6, seed) for seed in range(3)]
  with pytest.raises(ValueError, match="layer 'pooled' of model 'toy'"):
    activations.extract(_toy_model(poison=True), images, source_degrees=8)


def test_extract_rejects_unknown_layers():
  with pytest.raises(ValueError, match="pixels, pooled"):
    activations.extract(_toy_model(), [_image()], source_degrees=8, layers=["fc9"])


def test_check_finite_counts_over_blocks_like_numpy():
  features = np.random.default_rng(0).standard_normal((50, 3, 4))
  features[7, 1, 2] = np.nan
  features[31, 0, 0] = np.inf
  features[31, 2, 3] = -np.inf
  with pytest.raises(
    ValueError, match=r"hold 3 NaN .*\(in 2 of 50 stimuli, first at index 7\)"
  ):
    activations.check_finite(features, "layer 'x'", block=8)
  activations.check_finite(features[:7], "layer 'x'", block=3)  # the clean rows pass
