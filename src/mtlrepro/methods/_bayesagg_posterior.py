"""Numerical core of BayesAgg-MTL (Achituve et al., ICML 2024): last-layer posteriors and the
moments of the per-example gradient dL/dh under them; also the prior dicts (``BayesAgg.prior``)
are built, copied and moved here.

Conventions (shared by every function here)
-------------------------------------------
* ``X`` is the batch of shared features augmented with a constant 1 column, ``[B, D]`` with
  ``D = d + 1`` (the last coordinate of a parameter vector is the head's bias). Heads without a
  bias use ``D = d`` and no augmentation; ``d`` is always the width of h.
* A task's Bayesian layer is theta in R^D (binary / regression) or R^{C*D} (multi-class, flattened
  class-major: index ``c * D + e``).
* Per-example losses are the paper's: squared error ``(y - x^T theta)^2`` for regression (noise
  variance 1), BCE-with-logits for binary tasks and softmax cross-entropy for multi-class tasks.
  ``g_i = d loss_i / d h_i`` is the gradient of ONE example's loss (not divided by B).
* ``M`` is the label mask (1 = labelled). Unlabelled examples contribute nothing to a posterior
  and get zero mean / zero weight in the aggregation.
* Posteriors (precisions, Cholesky factors, means) are computed in float64; the sample-heavy
  moment computations run in the features' float dtype.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor

LA_DTYPE = torch.float64
# Monte-Carlo variances E[g^2] - E[g]^2 lose ~ eps(dtype) * E[g^2] to cancellation: they are
# never taken below MC_REL_VAR_FLOOR * eps(dtype) * E[g^2]. Closed-form / quadrature variances are
# sums of non-negative parts and only get the absolute `var_floor`.
MC_REL_VAR_FLOOR = 64.0
# Gram matrices are accumulated over chunks holding at most this many elements.
_CHUNK_ELEMS = 1 << 23


class BayesAggNumericalError(RuntimeError):
    """A posterior could not be factorised; the message names the task index and kind."""


# ----------------------------------------------------------------------------------------------
# linear algebra helpers
# ----------------------------------------------------------------------------------------------

def cholesky_jittered(A: Tensor, jitter: float, max_tries: int,
                      describe: Callable[[int], str]) -> Tensor:
    """Cholesky factor of a batch of SPD matrices ``[n, D, D]``.

    On failure, ``jitter * 10**t * mean(diag)`` (t = 0, 1, ...) is added to the diagonal of the
    failed matrices only, up to `max_tries` times. Non-finite input or exhaustion raises
    `BayesAggNumericalError` with ``describe(batch_index)`` (e.g. "task 3 (binary)").
    One host synchronisation per call (the success check).
    """
    L, info = torch.linalg.cholesky_ex(A)
    # NaN anywhere in A reaches the diagonal of L (or info): one cheap check of the diagonal sum
    bad = (info != 0) | ~torch.isfinite(L.diagonal(dim1=-2, dim2=-1).sum(-1))
    if not bool(bad.any()):
        return L
    finite = torch.isfinite(A).flatten(1).all(1)
    if not bool(finite.all()):
        idx = int((~finite).nonzero()[0])
        raise BayesAggNumericalError(
            f"BayesAgg: the posterior precision of {describe(idx)} has non-finite entries "
            f"(NaN/inf features, targets or head weights?)")
    A = A.clone()
    scale = A.diagonal(dim1=-2, dim2=-1).abs().mean(-1).clamp_min(1.0)  # [n]
    added = torch.zeros_like(scale)
    eye = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
    for t in range(max_tries):
        target = jitter * (10.0 ** t) * scale
        inc = torch.where(bad, target - added, torch.zeros_like(added))
        A = A + inc[:, None, None] * eye
        added = added + inc
        L_new, info = torch.linalg.cholesky_ex(A)
        ok_new = (info == 0) & torch.isfinite(L_new.diagonal(dim1=-2, dim2=-1).sum(-1))
        L = torch.where(bad[:, None, None] & ok_new[:, None, None], L_new, L)
        bad = bad & ~ok_new
        if not bool(bad.any()):
            return L
    idx = int(bad.nonzero()[0])
    raise BayesAggNumericalError(
        f"BayesAgg: the posterior precision of {describe(idx)} is not positive definite even "
        f"after adding {jitter * 10.0 ** (max_tries - 1):.1e} x mean(diag) to its diagonal")


def columns(A: Tensor, idx: list[int]) -> Tensor:
    """A[:, idx] (a view when idx is a contiguous range)."""
    if idx == list(range(idx[0], idx[0] + len(idx))):
        return A[:, idx[0]:idx[0] + len(idx)]
    return A[:, idx]


def tril_inverse(L: Tensor) -> Tensor:
    """L^{-1} for a batch of lower-triangular factors. With Lambda = L L^T,
    ``mean + z @ L^{-1}`` (z standard normal rows) has covariance Lambda^{-1}."""
    eye = torch.eye(L.shape[-1], dtype=L.dtype, device=L.device).expand_as(L)
    return torch.linalg.solve_triangular(L, eye, upper=False)


def weighted_gram(X: Tensor, W: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """sum_b W[b, k] x_b x_b^T for every column k of W: ``[B, D], [B, n] -> [n, D, D]``,
    accumulated in `dtype` (default: X's) and returned in X's dtype."""
    out_dtype = X.dtype
    if dtype is not None and dtype != X.dtype:
        return weighted_gram(X.to(dtype), W.to(dtype)).to(out_dtype)
    B, D = X.shape
    n = W.shape[1]
    out = X.new_zeros(n, D, D)
    step = max(1, _CHUNK_ELEMS // max(1, n * D))
    for s in range(0, B, step):
        Xc, Wc = X[s:s + step], W[s:s + step]
        out += (Wc.T[:, :, None] * Xc[None]).transpose(1, 2) @ Xc
    return out


def multiclass_ggn(X: Tensor, P: Tensor, m: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """GGN of the softmax cross-entropy of a linear layer (== its exact Hessian):
    ``sum_b m_b (diag(p_b) - p_b p_b^T) kron x_b x_b^T`` as a ``[C*D, C*D]`` matrix
    (class-major flattening), accumulated in `dtype` (default: X's)."""
    if dtype is not None and dtype != X.dtype:
        return multiclass_ggn(X.to(dtype), P.to(dtype), m.to(dtype)).to(X.dtype)
    B, D = X.shape
    C = P.shape[1]
    out = X.new_zeros(D, C * C * D)
    step = max(1, _CHUNK_ELEMS // max(1, C * C * D))
    for s in range(0, B, step):
        Xc, Pc, mc = X[s:s + step], P[s:s + step], m[s:s + step]
        H = (torch.diag_embed(Pc) - Pc[:, :, None] * Pc[:, None, :]) * mc[:, None, None]
        out += Xc.T @ (H.reshape(-1, C * C, 1) * Xc[:, None, :]).reshape(Xc.shape[0], -1)
    # out[d, (c, k, e)] -> [c, d, k, e]
    return out.reshape(D, C, C, D).permute(1, 0, 2, 3).reshape(C * D, C * D)


# ----------------------------------------------------------------------------------------------
# prior dicts (the format of BayesAgg.prior): "reg_mean" [R, D], "reg_prec" [R, D, D],
# "reg_shared" (all regression precisions equal), "bin_mean" / "bin_prec" likewise, and the lists
# "mc_mean" / "mc_prec" with one [C*D] / [C*D, C*D] entry per multi-class head
# ----------------------------------------------------------------------------------------------

def isotropic_prior(D: int, n_regression: int, n_binary: int, multiclass_classes: Sequence[int],
                    prior_scale: float, prior_scale_classification: float,
                    device) -> dict[str, Any]:
    """The prior dict of N(0, prior_scale I) for the regression heads and of
    N(0, prior_scale_classification I) for the classification heads."""
    lam = 1.0 / float(prior_scale)
    lam_cls = 1.0 / float(prior_scale_classification)
    eye = torch.eye(D, dtype=LA_DTYPE, device=device)
    pr: dict[str, Any] = {}
    pr["reg_mean"] = torch.zeros(n_regression, D, dtype=LA_DTYPE, device=device)
    pr["reg_prec"] = (eye * lam).expand(n_regression, D, D).clone()
    pr["reg_shared"] = True
    pr["bin_mean"] = torch.zeros(n_binary, D, dtype=LA_DTYPE, device=device)
    pr["bin_prec"] = (eye * lam_cls).expand(n_binary, D, D).clone()
    pr["mc_mean"], pr["mc_prec"] = [], []
    for n_classes in multiclass_classes:
        n = n_classes * D
        pr["mc_mean"].append(torch.zeros(n, dtype=LA_DTYPE, device=device))
        pr["mc_prec"].append(torch.eye(n, dtype=LA_DTYPE, device=device) * lam_cls)
    return pr


def all_equal(prec: Tensor) -> bool:
    """Whether every matrix of the batch ``[n, D, D]`` equals the first (the "reg_shared" flag)."""
    return bool(prec.shape[0] <= 1 or torch.equal(prec, prec[:1].expand_as(prec)))


def clone_nested(x):
    """A copy of a prior dict (or any nest of dicts and lists) with every tensor cloned."""
    if isinstance(x, Tensor):
        return x.clone()
    if isinstance(x, dict):
        return {k: clone_nested(v) for k, v in x.items()}
    if isinstance(x, list):
        return [clone_nested(v) for v in x]
    return x


def nested_to(x, device):
    """A prior dict (or any nest of dicts and lists) with every tensor moved to `device`."""
    if isinstance(x, Tensor):
        return x.to(device)
    if isinstance(x, dict):
        return {k: nested_to(v, device) for k, v in x.items()}
    if isinstance(x, list):
        return [nested_to(v, device) for v in x]
    return x


# ----------------------------------------------------------------------------------------------
# posteriors
# ----------------------------------------------------------------------------------------------

def regression_posterior(X: Tensor, Y: Tensor, M: Tensor, prior_mean: Tensor, prior_prec: Tensor,
                         *, jitter: float, max_tries: int, describe: Callable[[int], str],
                         shared: bool = False, gram_dtype: torch.dtype | None = None):
    """Closed-form Gaussian posterior of linear-Gaussian heads (noise variance 1), paper Eq. 2.

    X [B, D], Y [B, R] (any value where unlabelled), M [B, R] mask, prior_mean [R, D],
    prior_prec [R, D, D] (or [1, D, D] when `shared`). With ``shared=True`` (every task has the
    same prior precision and every example is labelled for every task) one factorisation serves
    all tasks and the returned precision / factor have a leading dimension of 1.

    Returns (mean [R, D], precision [R|1, D, D], cholesky factor of the precision [R|1, D, D]).
    The batch Gram matrices may be accumulated in `gram_dtype` (e.g. float32); everything else
    is float64.
    """
    MY = M * Y
    if shared:
        prec = prior_prec[:1] + weighted_gram(X, X.new_ones(X.shape[0], 1), gram_dtype)
        rhs = prior_mean @ prior_prec[0] + MY.T @ X  # prior_prec symmetric
        L = cholesky_jittered(prec, jitter, max_tries, lambda i: describe(0))
        mean = torch.cholesky_solve(rhs.T, L[0]).T
    else:
        prec = prior_prec + weighted_gram(X, M, gram_dtype)
        rhs = (prior_prec @ prior_mean[:, :, None]).squeeze(-1) + MY.T @ X
        L = cholesky_jittered(prec, jitter, max_tries, describe)
        mean = torch.cholesky_solve(rhs[:, :, None], L).squeeze(-1)
    return mean, prec, L


def binary_laplace_posterior(X: Tensor, Y: Tensor, M: Tensor, theta_hat: Tensor,
                             prior_mean: Tensor, prior_prec: Tensor, *, jitter: float,
                             max_tries: int, describe: Callable[[int], str],
                             gram_dtype: torch.dtype | None = None):
    """Second-order (Newton / Laplace-GGN) posterior of paper Eq. 8-10 for K_b logistic heads.

    Objective (negative log posterior) for task k:
        sum_b M[b,k] BCE(x_b^T theta, Y[b,k]) + 1/2 (theta - m_p)^T Lambda_p (theta - m_p)
    expanded to second order around the current head theta_hat [K_b, D]; the GGN equals the exact
    Hessian for a linear logistic layer. Returns (mean = theta_hat - B^{-1} a, B, chol(B)).
    """
    logits = X @ theta_hat.T  # [B, Kb]
    p = torch.sigmoid(logits)
    prec = prior_prec + weighted_gram(X, M * p * (1 - p), gram_dtype)
    grad = (M * (p - Y)).T @ X + (prior_prec @ (theta_hat - prior_mean)[:, :, None]).squeeze(-1)
    L = cholesky_jittered(prec, jitter, max_tries, describe)
    mean = theta_hat - torch.cholesky_solve(grad[:, :, None], L).squeeze(-1)
    return mean, prec, L


def multiclass_laplace_posterior(X: Tensor, y: Tensor, m: Tensor, theta_hat: Tensor,
                                 prior_mean: Tensor, prior_prec: Tensor, *, jitter: float,
                                 max_tries: int, describe: Callable[[int], str],
                                 gram_dtype: torch.dtype | None = None):
    """Same as `binary_laplace_posterior` for one softmax head.

    X [B, D], y [B] long class indices (any valid index where unlabelled), m [B] mask,
    theta_hat [C, D], prior_mean [C*D], prior_prec [C*D, C*D].
    Returns (mean [C*D], precision [C*D, C*D], chol [C*D, C*D]).
    """
    C = theta_hat.shape[0]
    logits = X @ theta_hat.T  # [B, C]
    p = torch.softmax(logits, dim=-1)
    resid = (p - torch.nn.functional.one_hot(y, C).to(p.dtype)) * m[:, None]
    prec = prior_prec + multiclass_ggn(X, p, m, gram_dtype)
    grad = (resid.T @ X).reshape(-1) + prior_prec @ (theta_hat.reshape(-1) - prior_mean)
    L = cholesky_jittered(prec[None], jitter, max_tries, lambda i: describe(0))[0]
    mean = theta_hat.reshape(-1) - torch.cholesky_solve(grad[:, None], L).squeeze(-1)
    return mean, prec, L


# ----------------------------------------------------------------------------------------------
# gradient moments: all return (E[g], Var[g]) of shape [n_tasks, B, d] (diagonal variances)
# ----------------------------------------------------------------------------------------------

def regression_moments(X: Tensor, Y: Tensor, mean: Tensor, cov: Tensor, d: int):
    """Exact first moment and per-dimension variance of g = 2 w (x^T theta - y) (paper Eq. 4).

    theta ~ N(mean, cov), w = theta[:d]. With e = x^T theta - y (mean mu_e, variance
    v = x^T cov x) and c = Cov(w, e) = (cov x)[:d], Isserlis' theorem gives
        E[g]      = 2 (c + m_w mu_e)
        Var[g]_j  = 4 (m_j^2 v + S_jj mu_e^2 + S_jj v + c_j^2 + 2 m_j mu_e c_j)
    which is the diagonal of the paper's Eq. 4 minus E[g]E[g]^T (bias included via x = [h, 1]).
    X [B, D], Y [B, R], mean [R, D], cov [R|1, D, D]. Cost O(R B D^2) (O(B D^2) when shared).
    """
    R = mean.shape[0]
    c = X[None] @ cov  # [R|1, B, D]
    v = (c * X[None]).sum(-1)  # [R|1, B]
    me = ((X @ mean.T).T - Y.T)[..., None]  # mu_e, [R, B, 1]
    cw = c[..., :d]
    mw = mean[:, None, :d]  # [R, 1, d]
    Sdd = cov.diagonal(dim1=-2, dim2=-1)[:, None, :d].expand(R, 1, d)  # [R, 1, d]
    mu = torch.baddbmm(cw, me, mw, beta=2.0, alpha=2.0)  # 2 (c + m mu_e)
    var = torch.baddbmm(cw, me, mw, alpha=2.0).mul_(cw)  # c^2 + 2 m mu_e c
    # + (m^2 + S_jj) v + S_jj mu_e^2 as one [R, B, 2] x [R, 2, d] product; all times 4
    lhs = torch.stack([v.expand(R, -1), me[..., 0] * me[..., 0]], -1)
    rhs = torch.cat([mw * mw + Sdd, Sdd], 1)
    var.baddbmm_(lhs, rhs, beta=4.0, alpha=4.0)
    return mu, var


def binary_mc_moments(X: Tensor, Y: Tensor, M: Tensor, mean: Tensor, Linv: Tensor, d: int,
                      n_samples: int, generator: torch.Generator):
    """Monte-Carlo moments (paper Eq. 11) for K_b logistic heads, batched over tasks and samples.

    theta_j = mean + z_j L^{-1} (z_j ~ N(0, I) drawn from `generator`); g_ij = w_j r_ij with
    r_ij = sigmoid(x_i^T theta_j) - y_i. Since g factorises, E[g] = R^T W / J and
    E[g^2] = (R^2)^T W^2 / J are two GEMMs: no [J, B, d] tensor is formed.
    X [B, D], Y/M [B, Kb] (M None: all labelled), mean [Kb, D], Linv [Kb, D, D] (float dtype
    of X).
    """
    Kb, D = mean.shape
    z = randn((Kb, n_samples, D), generator, X)
    # theta_j = mean + z_j L^{-1}, split into the weights w_j [Kb, J, d] and the rest (bias)
    w = torch.baddbmm(mean[:, None, :d], z, Linv[..., :d])
    logits = w @ X[:, :d].T  # [Kb, J, B]
    if D > d:
        logits.add_((z @ Linv[..., d:] + mean[:, None, d:]) @ X[:, d:].T)
    r = logits.sigmoid_().sub_(Y.T[:, None, :])
    if M is not None:
        r.mul_(M.T[:, None, :])
    mu = torch.bmm(r.transpose(1, 2), w).div_(n_samples)  # [Kb, B, d]
    var = torch.bmm(r.mul_(r).transpose(1, 2), w.mul_(w)).div_(n_samples)  # E[g^2]
    return mu, var.addcmul_(mu, mu, value=-1.0)


def multiclass_mc_moments(X: Tensor, y: Tensor, m: Tensor | None, mean: Tensor, L: Tensor,
                          C: int, d: int, n_samples: int, generator: torch.Generator):
    """Monte-Carlo moments (paper Eq. 11) for one softmax head.

    theta_j = mean + z_j L^{-1} (a triangular solve with the precision's Cholesky factor L,
    [C*D, C*D], in X's dtype), g_ij = sum_c r_ijc w_jc with r = softmax(logits) - onehot(y).
    Both moments are GEMMs over (sample, class) pairs (C of them for the second moment), so no
    [J, B, d] tensor is formed:
        E[g]_i   = (1/J) sum_{j,c} r_ijc w_jc
        E[g^2]_i = (1/J) sum_{j, c<=c'} (2 - [c = c']) r_ijc r_ijc' (w_jc * w_jc')
    y [B] long, m [B] mask or None, mean [C*D]; returns ([1, B, d], [1, B, d]).
    """
    B, D = X.shape
    J = n_samples
    z = randn((J, C * D), generator, X)
    # theta^T = L^{-T} z^T: a left solve with the upper factor keeps theta row-major
    theta = torch.linalg.solve_triangular(L.mT, z.mT, upper=True).mT.add_(mean)
    theta = theta.reshape(J, C, D)
    lg = (theta.reshape(J * C, D) @ X.T).reshape(J, C, B)  # logits, class dim in the middle
    lg.sub_(lg.amax(1, keepdim=True)).exp_()
    r = lg.div_(lg.sum(1, keepdim=True))  # softmax over classes
    r.sub_(torch.nn.functional.one_hot(y, C).to(X.dtype).T[None])
    if m is not None:
        r.mul_(m[None, None, :])
    w = theta[..., :d]  # [J, C, d] (a view)
    mu = (r.reshape(J * C, B).T @ w.reshape(J * C, d)).div_(J)
    second = torch.zeros_like(mu)
    for c in range(C):  # pairs (c, c') with c' >= c, off-diagonal pairs counted twice
        rr = r[:, c:c + 1] * r[:, c:]  # [J, C - c, B]
        rr[:, 1:] *= 2.0
        ww = w[:, c:c + 1] * w[:, c:]  # [J, C - c, d]
        second.addmm_(rr.reshape(-1, B).T, ww.reshape(-1, d))
    second.div_(J)
    return mu[None], second.addcmul_(mu, mu, value=-1.0)[None]


_GH_CACHE: dict = {}


def _gauss_hermite(n: int, like: Tensor):
    key = (n, like.device, like.dtype)
    if key not in _GH_CACHE:
        t, w = np.polynomial.hermite_e.hermegauss(n)  # weight exp(-t^2 / 2)
        w = w / math.sqrt(2.0 * math.pi)
        _GH_CACHE[key] = (torch.as_tensor(t, dtype=like.dtype, device=like.device),
                          torch.as_tensor(w, dtype=like.dtype, device=like.device))
    return _GH_CACHE[key]


def binary_quadrature_moments(X: Tensor, Y: Tensor, M: Tensor, mean: Tensor, cov: Tensor, d: int,
                              n_nodes: int):
    """Deterministic moments for logistic heads (the fast alternative to MC).

    The gradient depends on theta only through w = theta[:d] and the scalar logit a = x^T theta,
    which are jointly Gaussian. Conditioning w on a (E[w|a] = m + c_hat t with
    t = (a - mu_a)/sqrt(v), c_hat = Cov(w, a)/sqrt(v), Var[w_j|a] = S_jj - c_hat_j^2) reduces
    E[g] and E[g^2] to 1-D integrals over t ~ N(0, 1), evaluated with `n_nodes`-point
    Gauss-Hermite quadrature:
        E[g]   = m R0 + c_hat R1,              R_k = E[t^k r(a)]
        Var[g] = (S_jj - c_hat_j^2) Q0 + Var_t(m_j r + c_hat_j t r),   Q_k = E[t^k r(a)^2]
    Exact up to quadrature error; cost O(K_b B D^2 + K_b B n_nodes), no random draws.
    """
    t, wq = _gauss_hermite(n_nodes, torch.empty((), dtype=LA_DTYPE, device=X.device))
    c = X[None] @ cov  # [Kb, B, D]
    v = (c * X[None]).sum(-1).clamp_min(1e-30)  # [Kb, B]
    sv = v.sqrt()
    chat = c[..., :d] / sv[..., None]
    mu_a = (X @ mean.T).T  # [Kb, B]
    a = mu_a[..., None].to(LA_DTYPE) + sv[..., None].to(LA_DTYPE) * t  # [Kb, B, Q]
    r = (torch.sigmoid(a) - Y.T[..., None].to(LA_DTYPE)) * M.T[..., None].to(LA_DTYPE)
    wr = wq * r
    R0, R1 = wr.sum(-1), (wr * t).sum(-1)
    wr2 = wr * r
    Q0, Q1, Q2 = wr2.sum(-1), (wr2 * t).sum(-1), (wr2 * t * t).sum(-1)
    var_r, cov_r, var_tr = Q0 - R0 * R0, Q1 - R0 * R1, Q2 - R1 * R1
    dt = X.dtype
    R0, R1, Q0 = R0.to(dt)[..., None], R1.to(dt)[..., None], Q0.to(dt)[..., None]
    var_r, cov_r, var_tr = (x.to(dt)[..., None] for x in (var_r, cov_r, var_tr))
    mw = mean[:, None, :d]
    Sdd = cov.diagonal(dim1=-2, dim2=-1)[:, None, :d]
    mu = mw * R0 + chat * R1
    var = (Sdd - chat * chat).clamp_min(0) * Q0 + mw * mw * var_r + 2 * mw * chat * cov_r \
        + chat * chat * var_tr
    return mu, var


def assemble_moments(parts: Sequence[tuple[list[int], Tensor, Tensor]],
                     K: int) -> tuple[Tensor, Tensor]:
    """Per-group (task indices, E[g], Var[g]) -> [K, B, d] tensors in task order."""
    if len(parts) == 1:
        return parts[0][1], parts[0][2]
    order = [k for idx, _, _ in parts for k in idx]
    mu = torch.cat([p[1] for p in parts])
    var = torch.cat([p[2] for p in parts])
    if order != list(range(K)):
        inv = torch.as_tensor(sorted(range(K), key=order.__getitem__), device=mu.device)
        mu, var = mu[inv], var[inv]
    return mu, var


def randn(shape: Sequence[int], generator: torch.Generator, like: Tensor) -> Tensor:
    """Standard normal draws from `generator` (on the generator's device), moved to `like`."""
    z = torch.randn(tuple(shape), generator=generator, device=generator.device, dtype=like.dtype)
    return z if z.device == like.device else z.to(like.device)


# ----------------------------------------------------------------------------------------------
# aggregation (paper Eq. 7 with the power s)
# ----------------------------------------------------------------------------------------------

def relative_var_floors(monte_carlo: Sequence[bool], dtype: torch.dtype,
                        device) -> Tensor | None:
    """The `rel_floor` [K] of `precision_weights`: MC_REL_VAR_FLOOR * eps(dtype) for the tasks
    whose moments are Monte-Carlo estimates, 0 for the others; None when no task's are."""
    if not any(monte_carlo):
        return None
    r = MC_REL_VAR_FLOOR * torch.finfo(dtype).eps
    return torch.tensor([r if mc else 0.0 for mc in monte_carlo], dtype=dtype, device=device)


def precision_weights(mu: Tensor, var: Tensor, powers: Tensor, mask: Tensor | None,
                      var_floor: float, rel_floor: Tensor | None = None) -> Tensor:
    """alpha[k, i, j] = lambda_kij^s_k / sum_k' lambda_k'ij^s_k' with lambda = 1 / Var[g]
    (variance floored at max(var_floor, rel_floor_k * E[g^2])). Tasks unlabelled for example
    i get alpha = 0; an example with no labelled task gets alpha = 0 for every task.
    mu/var [K, B, d], powers [K], mask [K, B] bool (None: everything labelled), rel_floor [K]
    or None. Computed as a softmax of -s log(var) (no overflow for tiny variances)."""
    if rel_floor is not None:
        floor = (rel_floor[:, None, None] * (mu * mu + var.clamp_min(0))).clamp_min_(var_floor)
        logw = torch.maximum(var, floor).log_()
    else:
        logw = var.clamp_min(var_floor).log_()
    logw.mul_(-powers[:, None, None])
    if mask is not None:
        logw.masked_fill_(~mask[..., None], float("-inf"))
    top = logw.amax(0)
    if mask is not None:
        top.clamp_min_(torch.finfo(top.dtype).min)  # rows without any label: -inf -> finite
    w = logw.sub_(top).exp_()
    return w.div_(w.sum(0).clamp_min_(torch.finfo(w.dtype).tiny))
