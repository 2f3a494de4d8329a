"""Representational similarity: dissimilarity matrices, rank correlations, CKA.

A representational dissimilarity matrix (RDM) says how differently a system
responds to every pair of stimuli. Two systems (a model layer and a brain
area) are compared through their RDMs, which sidesteps any map between units:
RSA correlates the two RDMs' upper triangles; linear CKA compares the two
stimulus-by-stimulus Gram matrices after centring.

Maths (axis legend: n stimuli, p and q features, m = n(n-1)/2 pairs):

  RDM, correlation:  D_ij = 1 - r(x_i, x_j), r the Pearson correlation of
    stimulus i's and j's patterns across features. With z_i the pattern
    centred across features and scaled to unit norm, r = z_i . z_j, so
    D = 1 - Z Z^T; ||z_i - z_j||^2 = 2 D_ij.
  RDM, euclidean:  D_ij = ||x_i - x_j||, from the Gram of the stimuli
    centred across stimuli: D_ij^2 = G_ii + G_jj - 2 G_ij.
  Spearman: Pearson r of the ranks, ties sharing their average rank.
  Kendall tau-a: (1/m(m-1)) sum over ordered pairs (a, b), a != b, of
    sign(x_a - x_b) sign(y_a - y_b); ties count 0 and stay in the
    denominator, which is what the RSA literature wants when a model predicts
    tied dissimilarities (Nili et al. 2014).
  Linear CKA: HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)) with K = X X^T,
    L = Y Y^T (n, n).
    biased: HSIC ~ <H K H, H L H>_F, H = I - 11^T/n the centring matrix;
      equal to ||Xc^T Yc||_F^2 for column-centred Xc, Yc, which is cheaper
      when p + q < n.
    unbiased (Song et al. 2012): HSIC_u = <U(K), U(L)>_F / (n(n-3)), U the
      "U-centring": zero the diagonal, then for i != j
        U(K)_ij = K_ij - K_i. / (n-2) - K_.j / (n-2) + K_.. / ((n-1)(n-2)),
      with K_i., K_.j, K_.. row, column and total sums; U(K)_ii = 0. This
      equals the estimator's published closed form and needs n >= 4. Being a
      Frobenius inner product, it keeps |CKA| <= 1 (Cauchy-Schwarz).
  A Gram from an RDM (classical scaling): any K with K_ii + K_jj - 2 K_ij =
    D2_ij (D2 the squared Euclidean distances) gives the same centred Gram,
    so for centring-based CKA the Gram is -D2/2 (euclidean) or 1 - D, the
    correlation matrix itself (correlation).

float32: every product is formed from centred data (features centred before
a Gram, ranks centred by Pearson), and matmuls run at full precision
("highest"), since TF32 passes on GPUs lose ~1e-3 in Gram matrices.

References:
  Kriegeskorte, N., Mur, M. & Bandettini, P. (2008). Representational
    similarity analysis. Front. Syst. Neurosci. 2:4.
  Nili, H. et al. (2014). A toolbox for representational similarity analysis.
    PLoS Comput. Biol. 10(4):e1003553.
  Song, L., Smola, A., Gretton, A., Bedo, J. & Borgwardt, K. (2012). Feature
    selection via dependence maximization. JMLR 13:1393-1434.
  Kornblith, S., Norouzi, M., Lee, H. & Hinton, G. (2019). Similarity of
    neural network representations revisited. ICML.
  Nguyen, T., Raghu, M. & Kornblith, S. (2021). Do wide and deep networks
    learn the same things? ICLR.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxscore.kernels.correlation import pearson_r

RDM_METRICS = ("correlation", "euclidean")
RSA_METHODS = ("spearman", "kendall_tau_a", "pearson")
KENDALL_BLOCK = 1 << 22  # elements of sign products held at once


def _float_dtype(*arrays):
  """The floating dtype the inputs promote to (integers become JAX's default)."""
  dtype = jnp.result_type(*arrays)
  if not jnp.issubdtype(dtype, jnp.floating):
    dtype = jnp.result_type(float)
  return dtype


def _check_choice(name, value, valid):
  if value not in valid:
    raise ValueError(
      f"{name} must be one of {', '.join(map(repr, valid))}, got {value!r}."
    )


def _check_vectors(x, y, minimum=2):
  if x.ndim != 1:
    raise ValueError(f"x must be a 1-D array, got shape {tuple(x.shape)}.")
  if y.shape != x.shape:
    raise ValueError(
      f"y must have the shape of x, {tuple(x.shape)}, got {tuple(y.shape)}."
    )
  if x.shape[0] < minimum:
    raise ValueError(f"x and y need at least {minimum} values, got {x.shape[0]}.")


def _check_square(name, matrix):
  if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
    raise ValueError(
      f"{name} must be a square (n_stimuli, n_stimuli) matrix, got shape "
      f"{tuple(matrix.shape)}."
    )


def _check_pair_of_square(name_a, a, name_b, b, minimum=2):
  _check_square(name_a, a)
  _check_square(name_b, b)
  if b.shape != a.shape:
    raise ValueError(
      f"{name_b} must have the shape of {name_a}, {tuple(a.shape)}, got "
      f"{tuple(b.shape)}; both must describe the same stimuli."
    )
  if a.shape[0] < minimum:
    raise ValueError(
      f"{name_a} and {name_b} need at least {minimum} stimuli, got {a.shape[0]}."
    )


def _centre_columns(X):
  """Centres each column over the rows; shifting by row 0 first keeps float32
  exact for columns that sit on a large offset."""
  shifted = X - X[:1]
  return shifted - jnp.mean(shifted, axis=0, keepdims=True)


@functools.partial(jax.jit, static_argnames=("metric",))
def rdm(features, metric="correlation"):
  """The representational dissimilarity matrix of stimulus patterns.

  Args:
    features: (n_stimuli, n_features) responses, one pattern per stimulus.
    metric: ``"correlation"`` (1 - Pearson r between two stimuli's patterns,
      in [0, 2]) or ``"euclidean"`` (distance between the patterns).

  Returns:
    (n_stimuli, n_stimuli) symmetric RDM with an exactly zero diagonal, in the
    floating dtype of ``features``. With ``"correlation"``, a stimulus whose
    pattern is constant across features has no correlation: its row and
    column are NaN (diagonal 0), on purpose, for the caller to report.
  """
  features = jnp.asarray(features)
  _check_choice("metric", metric, RDM_METRICS)
  if features.ndim != 2:
    raise ValueError(
      "features must be a 2-D array of shape (n_stimuli, n_features), got "
      f"shape {tuple(features.shape)}."
    )
  if features.shape[0] < 2:
    raise ValueError(f"features need at least 2 stimuli, got {features.shape[0]}.")
  X = features.astype(_float_dtype(features))
  n_stimuli = X.shape[0]
  diagonal = jnp.eye(n_stimuli, dtype=bool)
  with jax.default_matmul_precision("highest"):
    if metric == "correlation":
      # Centre each pattern across its features (rows, so transpose twice),
      # scale by its largest value so the squares cannot overflow, normalise.
      Xc = _centre_columns(X.T).T  # (n_stimuli, n_features)
      scale = jnp.max(jnp.abs(Xc), axis=1, keepdims=True)  # (n_stimuli, 1)
      valid = scale[:, 0] > 0
      Xc = Xc / jnp.where(valid[:, None], scale, 1)
      norm = jnp.sqrt(jnp.sum(Xc * Xc, axis=1, keepdims=True))
      Z = Xc / jnp.where(valid[:, None], norm, 1)
      D = 1 - Z @ Z.T  # (n_stimuli, n_stimuli)
      D = jnp.clip(0.5 * (D + D.T), 0, 2)
      D = jnp.where(valid[:, None] & valid[None, :], D, jnp.nan)
    else:
      Xc = _centre_columns(X)  # distances do not change under translation
      G = Xc @ Xc.T  # (n_stimuli, n_stimuli)
      sq = jnp.diag(G)
      D2 = jnp.maximum(sq[:, None] + sq[None, :] - 2 * G, 0)
      D = jnp.sqrt(0.5 * (D2 + D2.T))
  return jnp.where(diagonal, 0, D).astype(X.dtype)


def upper_triangle(rdm):
  """The entries above the diagonal, row by row.

  Args:
    rdm: (n_stimuli, n_stimuli) matrix.

  Returns:
    (n_stimuli * (n_stimuli - 1) / 2,) entries (0, 1), (0, 2), ..., (1, 2),
    ...: the order of ``scipy.spatial.distance.squareform``.
  """
  rdm = jnp.asarray(rdm)
  _check_square("rdm", rdm)
  rows, cols = np.triu_indices(rdm.shape[0], k=1)
  return rdm[rows, cols]


def _average_ranks(x):
  """1-based ranks of a 1-D array; tied values share their average rank.

  A value with ``left`` smaller values and ``right`` values no larger holds
  ranks left + 1 .. right, whose mean is (left + right + 1) / 2.
  """
  ordered = jnp.sort(x)
  left = jnp.searchsorted(ordered, x, side="left")
  right = jnp.searchsorted(ordered, x, side="right")
  return (left + right + 1).astype(x.dtype) / 2


def _any_nan(*arrays):
  return functools.reduce(jnp.logical_or, [jnp.any(jnp.isnan(a)) for a in arrays])


@jax.jit
def spearman_r(x, y):
  """Spearman rank correlation of two vectors, ties given average ranks.

  Args:
    x: (n,) values, e.g. a model RDM's upper triangle.
    y: (n,) values, e.g. a brain RDM's upper triangle.

  Returns:
    Scalar in [-1, 1] in the floating dtype of the inputs; NaN when either
    input is constant or holds a NaN.
  """
  x, y = jnp.asarray(x), jnp.asarray(y)
  _check_vectors(x, y)
  dtype = _float_dtype(x, y)
  x, y = x.astype(dtype), y.astype(dtype)
  rx, ry = _average_ranks(x), _average_ranks(y)
  r = pearson_r(rx[:, None], ry[:, None])[0]
  return jnp.where(_any_nan(x, y), jnp.nan, r)


@jax.jit
def kendall_tau_a(x, y):
  """Kendall's tau-a: concordant minus discordant pairs over all pairs.

  Unlike tau-b (SciPy's default), tied pairs are not removed from the
  denominator, so a model that predicts many ties is not rewarded for them.
  Costs O(n^2) time and O(n * block) memory: rows of sign products are
  summed in blocks of ``KENDALL_BLOCK`` elements.

  Args:
    x: (n,) values.
    y: (n,) values.

  Returns:
    Scalar in [-1, 1] in the floating dtype of the inputs; NaN when either
    input holds a NaN.
  """
  x, y = jnp.asarray(x), jnp.asarray(y)
  _check_vectors(x, y)
  dtype = _float_dtype(x, y)
  x, y = x.astype(dtype), y.astype(dtype)
  n = x.shape[0]

  def row(values):
    xa, ya = values
    # Integer signs, so each row's count is exact; (n,) -> scalar.
    sx = jnp.sign(xa - x).astype(jnp.int32)
    sy = jnp.sign(ya - y).astype(jnp.int32)
    return jnp.sum(sx * sy)

  batch_size = max(1, min(n, KENDALL_BLOCK // n))
  per_row = jax.lax.map(row, (x, y), batch_size=batch_size)  # (n,)
  # Each row's share is in [-1, 1] before averaging, so nothing overflows.
  tau = jnp.mean(per_row.astype(dtype) / (n - 1))
  return jnp.where(_any_nan(x, y), jnp.nan, jnp.clip(tau, -1, 1))


@functools.partial(jax.jit, static_argnames=("method",))
def rsa(rdm_a, rdm_b, method="spearman"):
  """Representational similarity of two RDMs over their upper triangles.

  Args:
    rdm_a: (n_stimuli, n_stimuli) RDM, e.g. of a model layer.
    rdm_b: (n_stimuli, n_stimuli) RDM of the same stimuli in the same order,
      e.g. of a brain area.
    method: ``"spearman"`` (the RSA default), ``"kendall_tau_a"`` (for RDMs
      with many ties) or ``"pearson"``.

  Returns:
    Scalar correlation in [-1, 1], in the floating dtype of the inputs; NaN
    when an upper triangle is constant or holds a NaN.
  """
  _check_choice("method", method, RSA_METHODS)
  rdm_a, rdm_b = jnp.asarray(rdm_a), jnp.asarray(rdm_b)
  _check_pair_of_square("rdm_a", rdm_a, "rdm_b", rdm_b, minimum=3)
  a, b = upper_triangle(rdm_a), upper_triangle(rdm_b)  # (n_pairs,) each
  if method == "spearman":
    return spearman_r(a, b)
  if method == "kendall_tau_a":
    return kendall_tau_a(a, b)
  dtype = _float_dtype(a, b)
  r = pearson_r(a[:, None].astype(dtype), b[:, None].astype(dtype))[0]
  return jnp.where(_any_nan(a, b), jnp.nan, r)


def _double_centre(K):
  """H K H: subtracts row and column means, adds back the grand mean."""
  row = jnp.mean(K, axis=1, keepdims=True)  # (n, 1)
  col = jnp.mean(K, axis=0, keepdims=True)  # (1, n)
  return K - row - col + jnp.mean(K)


def _u_centre(K):
  """The U-centred Gram of the unbiased HSIC estimator (see module notes)."""
  n = K.shape[0]
  off = jnp.where(jnp.eye(n, dtype=bool), 0, K)
  row = jnp.sum(off, axis=1, keepdims=True)  # (n, 1)
  col = jnp.sum(off, axis=0, keepdims=True)  # (1, n)
  centred = off - row / (n - 2) - col / (n - 2) + jnp.sum(off) / ((n - 1) * (n - 2))
  return jnp.where(jnp.eye(n, dtype=bool), 0, centred)


def _unit_scale(A):
  """A divided by its largest magnitude, so that squared sums cannot overflow."""
  scale = jnp.max(jnp.abs(A))
  return A / jnp.where(scale > 0, scale, 1)


def _cosine(kl, kk, ll):
  """kl / sqrt(kk ll), NaN where either self-similarity is not positive."""
  valid = (kk > 0) & (ll > 0)
  denominator = jnp.sqrt(jnp.where(valid, kk, 1)) * jnp.sqrt(jnp.where(valid, ll, 1))
  return jnp.where(valid, jnp.clip(kl / denominator, -1, 1), jnp.nan)


def _check_cka_size(n, unbiased):
  if unbiased and n < 4:
    raise ValueError(
      f"The unbiased CKA estimator needs at least 4 stimuli (it divides by "
      f"n(n-3)), got {n}; use unbiased=False or more stimuli."
    )
  if n < 2:
    raise ValueError(f"CKA needs at least 2 stimuli, got {n}.")


@functools.partial(jax.jit, static_argnames=("unbiased",))
def gram_cka(K, L, unbiased=False):
  """Linear CKA from two Gram matrices of the same stimuli.

  The Grams need not be centred: centring (double for the biased form, U- for
  the unbiased one) happens here, so ``gram_from_rdm`` output is fine.

  Args:
    K: (n_stimuli, n_stimuli) symmetric Gram matrix, e.g. ``X @ X.T``.
    L: (n_stimuli, n_stimuli) symmetric Gram matrix of the same stimuli.
    unbiased: use the unbiased HSIC estimator of Song et al. (needs at least
      4 stimuli) instead of the biased (plug-in) one.

  Returns:
    Scalar in [-1, 1] (in [0, 1] for positive semi-definite Grams in the
    biased form), in the floating dtype of the inputs; NaN when either Gram
    is constant after centring (e.g. a dead layer).

  Raises:
    ValueError: shapes differ or are not square; ``unbiased`` with fewer than
      4 stimuli.
  """
  K, L = jnp.asarray(K), jnp.asarray(L)
  _check_pair_of_square("K", K, "L", L, minimum=1)
  _check_cka_size(K.shape[0], unbiased)
  dtype = _float_dtype(K, L)
  K, L = K.astype(dtype), L.astype(dtype)
  centre = _u_centre if unbiased else _double_centre
  Kc, Lc = _unit_scale(centre(K)), _unit_scale(centre(L))  # (n, n) each
  # The 1/n^2 or 1/(n(n-3)) factors of HSIC cancel in the ratio.
  return _cosine(jnp.sum(Kc * Lc), jnp.sum(Kc * Kc), jnp.sum(Lc * Lc))


@functools.partial(jax.jit, static_argnames=("unbiased",))
def linear_cka(X, Y, unbiased=False):
  """Linear centred kernel alignment of two representations of the same stimuli.

  Invariant to orthogonal transforms and isotropic scaling of either side,
  and to translations (features are centred across stimuli first).

  Args:
    X: (n_stimuli, p) features, e.g. a model layer.
    Y: (n_stimuli, q) features, e.g. recorded neuroids.
    unbiased: use the unbiased HSIC estimator of Song et al. (needs at least
      4 stimuli) instead of the biased (plug-in) one.

  Returns:
    Scalar in [-1, 1] (in [0, 1] for the biased form), in the floating dtype
    of the inputs; NaN when either side is constant across stimuli.

  Raises:
    ValueError: X or Y is not 2-D or their rows differ; ``unbiased`` with
      fewer than 4 stimuli.
  """
  X, Y = jnp.asarray(X), jnp.asarray(Y)
  for name, array in (("X", X), ("Y", Y)):
    if array.ndim != 2:
      raise ValueError(
        f"{name} must be a 2-D array of shape (n_stimuli, n_features), got "
        f"shape {tuple(array.shape)}."
      )
  if Y.shape[0] != X.shape[0]:
    raise ValueError(
      f"Y must have one row per stimulus, {X.shape[0]} as in X, got {Y.shape[0]}."
    )
  n, p = X.shape
  q = Y.shape[1]
  _check_cka_size(n, unbiased)
  dtype = _float_dtype(X, Y)
  Xc = _unit_scale(_centre_columns(X.astype(dtype)))  # (n, p)
  Yc = _unit_scale(_centre_columns(Y.astype(dtype)))  # (n, q)
  with jax.default_matmul_precision("highest"):
    if not unbiased and p + q < n:
      # <H K H, H L H> = ||Xc^T Yc||_F^2 with Xc, Yc centred: (p, q) products.
      XY, XX, YY = Xc.T @ Yc, Xc.T @ Xc, Yc.T @ Yc
      return _cosine(jnp.sum(XY * XY), jnp.sum(XX * XX), jnp.sum(YY * YY))
    return gram_cka(Xc @ Xc.T, Yc @ Yc.T, unbiased=unbiased)


@functools.partial(jax.jit, static_argnames=("metric",))
def gram_from_rdm(rdm, metric="correlation"):
  """A Gram matrix whose centred form is the one the RDM implies.

  For ``"euclidean"`` RDMs this is classical scaling, -D^2 / 2; for
  ``"correlation"`` RDMs it is 1 - D, the stimuli's pattern correlation
  matrix, i.e. the Gram of patterns centred and normalised across features.
  Both agree with the true Gram up to terms that centring removes, so
  ``gram_cka`` on them is linear CKA of the (normalised) patterns.

  Args:
    rdm: (n_stimuli, n_stimuli) RDM built with ``metric``.
    metric: ``"correlation"`` or ``"euclidean"``.

  Returns:
    (n_stimuli, n_stimuli) symmetric matrix, in the dtype of ``rdm``.
  """
  _check_choice("metric", metric, RDM_METRICS)
  rdm = jnp.asarray(rdm)
  _check_square("rdm", rdm)
  rdm = rdm.astype(_float_dtype(rdm))
  if metric == "correlation":
    return 1 - rdm
  return -0.5 * rdm * rdm
