"""Cross-validated ridge predictivity as a differentiable function of features.

``ridge_predictivity`` maps a layer's features of a set of stimuli to the
mean Pearson r, over neuroids and splits, of ridge predictions of held-out
responses. Every step is a smooth function of the features, so composing it
with a model's forward pass gives the gradient of neural predictivity with
respect to the model's parameters (e.g. as a term of a training loss).

The maths, per split (n = n_train, T = n_neuroids, A = n_alphas):
  G = Xc Xc^T                      (n_stimuli, n_stimuli), X centred on all
  K_train, K_test = G double-centred on the training rows (kernels.center_gram)
  for every alpha: C = K_train + alpha I = L L^T     (Cholesky, n x n)
    dual coefficients  D = C^-1 Yc                   (n, T)
    test predictions   K_test D + E[Y]               (n_test, T)
    LOO residuals      alpha D_i / (alpha (C^-1)_ii - 1/n)   (n, T)
  The LOO formula is the one ``kernels.ridge_fit_predict`` minimises (ridge
  with an unpenalised intercept; I - H = alpha C^-1 - 1 1^T / n on the
  centred kernel), written without eigendecompositions: the gradient of
  ``eigh`` is undefined at repeated eigenvalues, which every layer narrower
  than the training set has (its null space), while Cholesky's is not.

Alpha handling: one alpha gives plain ridge. Several alphas are combined per
neuroid with softmin weights ``softmax(-log(loo_mse) / temperature)`` over
the grid; the weights are smooth, so no argmax enters the gradient. As the
temperature goes to 0 the combination becomes the LOO-selected alpha of
``kernels.ridge_fit_predict``. With ``relative_alphas`` every alpha is
multiplied by the mean eigenvalue of K_train (its trace / n), which keeps
one grid meaningful while training rescales the features.

References:
  Hastie, Tibshirani & Friedman (2009), The Elements of Statistical
  Learning, sections 3.4.1 and 7.10 (ridge, leave-one-out shortcut).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl

from jaxscore import kernels
from jaxscore.kernels import linalg

DEFAULT_TEMPERATURE = 0.1


def _check_inputs(features, targets, train, test, alphas):
  if features.ndim != 2:
    raise ValueError(
      "features must be (n_stimuli, n_features), got shape "
      f"{tuple(features.shape)}; flatten each stimulus's activations first."
    )
  if targets.ndim != 2 or targets.shape[0] != features.shape[0]:
    raise ValueError(
      f"targets must be (n_stimuli, n_neuroids) with n_stimuli = "
      f"{features.shape[0]} as in features, got shape {tuple(targets.shape)}."
    )
  if train.ndim != 2 or test.ndim != 2 or train.shape[0] != test.shape[0]:
    raise ValueError(
      "train and test must be (n_splits, n_train) and (n_splits, n_test) "
      f"index arrays, got shapes {tuple(train.shape)} and {tuple(test.shape)}."
    )
  if train.shape[1] < 3 or test.shape[1] < 3:
    raise ValueError(
      "every split needs at least 3 train and 3 test stimuli, got "
      f"{train.shape[1]} and {test.shape[1]}."
    )
  if alphas.ndim != 1 or alphas.shape[0] == 0:
    raise ValueError(
      "alphas must be a non-empty 1-D array of positive penalties, got shape "
      f"{tuple(alphas.shape)}."
    )


def stimulus_gram(features: jax.Array) -> jax.Array:
  """(n_stimuli, n_stimuli) ``Xc Xc^T``, X centred on all stimuli; differentiable.

  Args:
    features: (n_stimuli, n_features) features.
  """
  Xc = features - jnp.mean(features, axis=0)
  with jax.default_matmul_precision("highest"):
    return Xc @ Xc.T  # (n_stimuli, n_stimuli)


def _smooth_r(pred, y):
  """Pearson r per column (n, T) -> (T,); 0 where either side is constant.

  Each column is shifted by its first value before centring, so a constant
  column centres to exact zeros; the double ``where`` keeps its gradient
  finite.
  """
  pc, yc = pred - pred[:1], y - y[:1]
  pc, yc = pc - jnp.mean(pc, axis=0), yc - jnp.mean(yc, axis=0)
  spp, syy = jnp.sum(pc * pc, axis=0), jnp.sum(yc * yc, axis=0)
  valid = (spp > 0) & (syy > 0)
  denominator = jnp.sqrt(jnp.where(valid, spp, 1) * jnp.where(valid, syy, 1))
  r = jnp.where(valid, jnp.sum(pc * yc, axis=0) / denominator, 0.0)
  # A prediction that is not finite (from NaN or infinite features) is NaN,
  # never a quiet 0.
  return jnp.where(jnp.all(jnp.isfinite(pred), axis=0), r, jnp.nan)


def _one_split(gram, targets, tr, te, alphas, temperature, relative_alphas):
  """Softmin-ridge test predictions of one split: (n_test, n_neuroids)."""
  K_train, K_test = kernels.center_gram(gram, tr, te)
  n_train = K_train.shape[0]
  Y = targets[tr]
  y_mean = jnp.mean(Y, axis=0)  # (T,)
  Yc = Y - y_mean
  if relative_alphas:
    alphas = alphas * jnp.trace(K_train) / n_train
  eye = jnp.eye(n_train, dtype=K_train.dtype)

  def one_alpha(alpha):
    L = jnp.linalg.cholesky(K_train + alpha * eye)  # (n, n) lower
    dual = jsl.cho_solve((L, True), Yc)  # (n, T) C^-1 Yc
    with jax.default_matmul_precision("highest"):
      pred = K_test @ dual + y_mean  # (n_test, T)
    L_inv = jsl.solve_triangular(L, eye, lower=True)  # (n, n)
    c_inv_diag = jnp.sum(L_inv * L_inv, axis=0)  # (n,) diag of C^-1
    loo = alpha * dual / (alpha * c_inv_diag - 1 / n_train)[:, None]
    return pred, jnp.mean(loo * loo, axis=0)

  # map_batch: no batched LAPACK call on the CPU (jaxscore.kernels.linalg).
  preds, mse = linalg.map_batch(one_alpha, alphas)  # (A, n_test, T), (A, T)
  if alphas.shape[0] == 1:
    return preds[0]
  weights = jax.nn.softmax(-jnp.log(mse) / temperature, axis=0)  # (A, T)
  return jnp.einsum("at,ast->st", weights, preds)


@functools.partial(jax.jit, static_argnames=("relative_alphas",))
def _predictivity(features, targets, train, test, alphas, temperature, relative_alphas):
  gram = stimulus_gram(features)

  def one_split(tr, te):
    pred = _one_split(gram, targets, tr, te, alphas, temperature, relative_alphas)
    return _smooth_r(pred, targets[te])  # (T,)

  r = linalg.map_batch(one_split, train, test)  # (n_splits, T)
  return jnp.mean(r), r


def ridge_predictivity(
  features: jax.Array,
  targets: jax.Array,
  train: jax.Array,
  test: jax.Array,
  *,
  alphas,
  temperature: float = DEFAULT_TEMPERATURE,
  relative_alphas: bool = False,
  return_r: bool = False,
):
  """Mean held-out Pearson r of ridge from features to neuroids; differentiable.

  Args:
    features: (n_stimuli, n_features) features, e.g. a layer's activations
      (a function of the parameters being differentiated).
    targets: (n_stimuli, n_neuroids) responses, rows in the order of
      ``features``.
    train: (n_splits, n_train) indices of each split's training stimuli.
    test: (n_splits, n_test) indices of each split's test stimuli.
    alphas: (n_alphas,) positive ridge penalties; one value is plain ridge,
      several are combined per neuroid by softmin of their LOO error.
    temperature: softmin temperature on the log LOO error (ignored for one
      alpha); smaller is closer to the argmin choice, larger is smoother.
    relative_alphas: scale every alpha by the mean eigenvalue of each split's
      training kernel (see the module docstring).
    return_r: also return the (n_splits, n_neuroids) correlations.

  Returns:
    The scalar mean over splits and neuroids of Pearson r on the test
    stimuli (a constant prediction or neuroid counts as r = 0), and with
    ``return_r`` the per-split, per-neuroid r as well.
  """
  features, targets = jnp.asarray(features), jnp.asarray(targets)
  train, test = jnp.asarray(train), jnp.asarray(test)
  alphas = jnp.atleast_1d(jnp.asarray(alphas, features.dtype))
  _check_inputs(features, targets, train, test, alphas)
  if not isinstance(alphas, jax.core.Tracer) and not bool(jnp.all(alphas > 0)):
    raise ValueError(f"alphas must all be positive, got {alphas.tolist()}.")
  if temperature <= 0:
    raise ValueError(f"temperature must be positive, got {temperature}.")
  mean, r = _predictivity(
    features,
    targets.astype(features.dtype),
    train,
    test,
    alphas,
    jnp.asarray(temperature, features.dtype),
    relative_alphas=bool(relative_alphas),
  )
  return (mean, r) if return_r else mean
