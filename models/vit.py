"""A small Vision Transformer in Flax, randomly initialised, as torchvision's ViT.

``vit_tiny``: 224 x 224 inputs cut into 16 x 16 patches (a 14 x 14 grid, 196
tokens, plus a class token: 197), width 192, 6 encoder layers of 3 heads
(64 dimensions each), MLP width 768, 1000 classes; 3.0M parameters. Its
width and heads are ViT-Ti's, with half of ViT-Ti's 12 layers, to keep it fast
on a CPU.

The layout is torchvision's ``VisionTransformer``: a 16 x 16 stride-16
convolution embeds the patches (``conv_proj``); a learned class token is put
in front and learned position embeddings are added; each encoder layer is
pre-norm, ``x + attention(ln_1(x))`` then ``x + mlp(ln_2(x))`` with an exact
(erf) GELU between the MLP's two linear layers; a last layer norm
(``encoder.ln``) and a linear head read the class token. Layer norms have
epsilon 1e-6. Dropout is left out (inference only).

Flax names follow torchvision's ``state_dict``: ``conv_proj``, the parameter
``class_token`` (1, 1, 192), the parameter ``encoder.pos_embedding``
(1, 197, 192), ``encoder.layers.encoder_layer_<i>`` holding ``ln_1``,
``self_attention`` (whose ``in_proj_weight`` (576, 192) and
``in_proj_bias`` are kept in PyTorch's (out, in) layout, as one parameter
each, like ``torch.nn.MultiheadAttention``; and ``out_proj``), ``ln_2``,
``mlp.0`` and ``mlp.3``; ``encoder.ln``; ``heads.head``.

Readout layers, in depth order: ``conv_proj`` (14x14x192 patch embeddings);
for every encoder layer ``i``, ``encoder_layer_<i>.cls`` (its output at the
class token, 192) and ``encoder_layer_<i>.mean`` (the mean over the 196 patch
tokens, 192); ``encoder.ln`` (the class token after the last layer norm,
192); ``heads.head`` (1000 logits).

Weights: patch embedding LeCun (truncated) normal, linear layers Glorot
uniform, position embeddings normal with standard deviation 0.02, class token
and biases zero, as torchvision draws them, except the head: torchvision
zeroes it, which would make the logits of a random model constant, so it is
LeCun normal here.

References:
  Dosovitskiy et al., "An Image is Worth 16x16 Words: Transformers for Image
  Recognition at Scale", ICLR 2021.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxscore.model import VisionModel
from models import zoo


@dataclasses.dataclass(frozen=True)
class ViTConfig:
  """Size of a Vision Transformer."""

  patch_size: int = 16
  width: int = 192
  depth: int = 6
  heads: int = 3
  mlp_width: int = 768
  n_classes: int = 1000
  image_size: int = zoo.IMAGE_SIZE


VIT_TINY = ViTConfig()
LN_EPSILON = 1e-6

_dense = nn.initializers.xavier_uniform()


class SelfAttention(nn.Module):
  """Multi-head self-attention with torch's packed input projection."""

  heads: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """(n, tokens, width) -> (n, tokens, width)."""
    n, tokens, width = x.shape
    head_width = width // self.heads
    # (3 * width, width), rows: the query, key and value projections in turn.
    in_weight = self.param("in_proj_weight", _dense, (3 * width, width), jnp.float32)
    in_bias = self.param(
      "in_proj_bias", nn.initializers.zeros, (3 * width,), jnp.float32
    )
    qkv = x @ in_weight.T.astype(x.dtype) + in_bias  # (n, tokens, 3 * width)
    q, k, v = (
      part.reshape(n, tokens, self.heads, head_width)
      for part in jnp.split(qkv, 3, axis=-1)
    )
    logits = jnp.einsum("nqhd,nkhd->nhqk", q, k) / jnp.sqrt(head_width)
    weights = jax.nn.softmax(logits, axis=-1)  # (n, heads, tokens, tokens)
    out = jnp.einsum("nhqk,nkhd->nqhd", weights, v).reshape(n, tokens, width)
    return nn.Dense(width, kernel_init=_dense, name="out_proj")(out)


class EncoderLayer(nn.Module):
  """Pre-norm transformer layer: attention, then a GELU MLP; both residual."""

  heads: int
  mlp_width: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    width = x.shape[-1]
    h = nn.LayerNorm(LN_EPSILON, name="ln_1")(x)
    x = x + SelfAttention(self.heads, name="self_attention")(h)
    h = nn.LayerNorm(LN_EPSILON, name="ln_2")(x)
    h = nn.Dense(self.mlp_width, kernel_init=_dense, name="mlp.0")(h)
    h = nn.gelu(h, approximate=False)
    return x + nn.Dense(width, kernel_init=_dense, name="mlp.3")(h)


class VisionTransformer(nn.Module):
  """torchvision's ViT of size ``config``, returning every readout layer."""

  config: ViTConfig = VIT_TINY

  @nn.compact
  def __call__(self, images: jax.Array) -> dict[str, jax.Array]:
    """Args: images (n_images, image_size, image_size, 3), normalised."""
    c = self.config
    zoo.check_images(images, "ViT", c.image_size)
    n_patches = (c.image_size // c.patch_size) ** 2
    layers = {}
    x = nn.Conv(
      c.width,
      (c.patch_size, c.patch_size),
      strides=c.patch_size,
      padding="VALID",
      name="conv_proj",
    )(images)
    layers["conv_proj"] = x
    x = x.reshape(x.shape[0], n_patches, c.width)
    class_token = self.param(
      "class_token", nn.initializers.zeros, (1, 1, c.width), jnp.float32
    )
    position = self.param(
      "encoder.pos_embedding",
      nn.initializers.normal(0.02),
      (1, n_patches + 1, c.width),
      jnp.float32,
    )
    class_tokens = jnp.broadcast_to(class_token, (x.shape[0], 1, c.width))
    x = jnp.concatenate([class_tokens.astype(x.dtype), x], axis=1) + position
    for i in range(c.depth):
      x = EncoderLayer(c.heads, c.mlp_width, name=f"encoder.layers.encoder_layer_{i}")(
        x
      )
      layers[f"encoder_layer_{i}.cls"] = x[:, 0]
      layers[f"encoder_layer_{i}.mean"] = x[:, 1:].mean(axis=1)
    x = nn.LayerNorm(LN_EPSILON, name="encoder.ln")(x)[:, 0]
    layers["encoder.ln"] = x
    layers["heads.head"] = nn.Dense(c.n_classes, name="heads.head")(x)
    return layers


def readout_layers(config: ViTConfig) -> tuple[str, ...]:
  """The readout layers of a ViT of size ``config``, in depth order."""
  blocks = (
    f"encoder_layer_{i}.{token}"
    for i in range(config.depth)
    for token in ("cls", "mean")
  )
  return ("conv_proj", *blocks, "encoder.ln", "heads.head")


def vit_tiny(*, key: jax.Array | None) -> VisionModel:
  """A randomly initialised ``VIT_TINY`` (224 x 224 inputs, 16 x 16 patches).

  Args:
    key: PRNG key the weights are drawn from; required.
  """
  module = VisionTransformer(VIT_TINY)
  return zoo.random_model("vit_tiny", module, readout_layers(VIT_TINY), key=key)
