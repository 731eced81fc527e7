"""Tests of BayesAgg-MTL (src/mtlrepro/methods/bayesagg.py).

Scale convention checked here: ``aggregate`` returns ``sum_k alpha_ik mu_ik / B`` where mu_ik is
the mean gradient of example i's own loss (not divided by B) and alpha sums to one over tasks;
``ctx.G[k, i]`` is the gradient of task k's MEAN loss, i.e. ``g_ik / B``. So with a vanishing
posterior covariance the direction is ``sum_k alpha_k G_k`` and, with equal precisions,
``G.mean(0)``.
"""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from mtlrepro.methods import GradientContext, build
from mtlrepro.methods import _bayesagg_posterior as P
from mtlrepro.methods.bayesagg import BayesAgg

DT = torch.float64


def make_heads(kinds, d, n_classes=3, seed=0, scale=0.5):
    g = torch.Generator().manual_seed(seed)
    heads = []
    for kind in kinds:
        out = n_classes if kind == "multiclass" else 1
        lin = torch.nn.Linear(d, out).to(DT)
        with torch.no_grad():
            lin.weight.copy_(scale * torch.randn(out, d, generator=g, dtype=DT))
            lin.bias.copy_(scale * torch.randn(out, generator=g, dtype=DT))
        heads.append(lin)
    return heads


def make_targets(kinds, B, g, n_classes=3):
    cols = []
    for kind in kinds:
        if kind == "regression":
            cols.append(torch.randn(B, generator=g, dtype=DT))
        elif kind == "binary":
            cols.append(torch.randint(0, 2, (B,), generator=g).to(DT))
        else:
            cols.append(torch.randint(0, n_classes, (B,), generator=g).to(DT))
    return torch.stack(cols, 1)


def task_loss(kind, out, y):
    """The per-task MEAN loss of the training loop over labelled examples."""
    m = ~torch.isnan(y)
    if kind == "regression":
        return F.mse_loss(out[m, 0], y[m])
    if kind == "binary":
        return F.binary_cross_entropy_with_logits(out[m, 0], y[m])
    return F.cross_entropy(out[m], y[m].long())


def make_ctx(kinds, heads, h, T):
    """What the training loop builds: each head fed a detached leaf copy of h."""
    G, losses = [], []
    for k, (kind, head) in enumerate(zip(kinds, heads)):
        hk = h.detach().clone().requires_grad_(True)
        loss = task_loss(kind, head(hk), T[:, k])
        (gk,) = torch.autograd.grad(loss, hk)
        G.append(gk)
        losses.append(loss.detach())
    return GradientContext(G=torch.stack(G), h=h.detach(), targets=T, heads=heads,
                           losses=torch.stack(losses))


def batch(kinds, heads, B, d, seed, n_classes=3):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(B, d, generator=g, dtype=DT)
    T = make_targets(kinds, B, g, n_classes)
    return make_ctx(kinds, heads, h, T)


def aug(h):
    return torch.cat([h, torch.ones(h.shape[0], 1, dtype=h.dtype)], 1)


def sample_theta(mean, prec, n, seed):
    g = torch.Generator().manual_seed(seed)
    L = torch.linalg.cholesky(prec)
    z = torch.randn(n, mean.numel(), generator=g, dtype=DT)
    return mean + torch.linalg.solve_triangular(L.T, z.T, upper=True).T


# ------------------------------------------------------------------------------------------------
# regression moments
# ------------------------------------------------------------------------------------------------

def test_regression_moments_match_monte_carlo_and_paper_eq4():
    """Closed-form E[g] and Var[g] (through the method, bias included) vs Monte Carlo on
    N = 200k draws from the method's own batch posterior. Tolerance: 5 standard errors of the
    MC estimates (estimated from the same draws), elementwise; with 2*6*4 = 48 entries a correct
    implementation fails with probability < 1e-4, while dropping the trace term Tr(A S)(S+M)
    shifts Var by 4 S_jj v -- tens of standard errors here (posterior from B=6 examples)."""
    kinds = ["regression", "regression"]
    B, d = 6, 4
    heads = make_heads(kinds, d)
    m = BayesAgg(2, kinds, prior_scale=1.0)
    ctx = batch(kinds, heads, B, d, seed=1)
    m.aggregate(ctx)
    mu, var = m.last_moments()
    X = aug(ctx.h)
    N = 200_000
    for k in range(2):
        mean, prec = m.last_posterior(k)
        th = sample_theta(mean, prec, N, seed=10 + k)  # [N, D]
        e = th @ X.T - ctx.targets[:, k]  # [N, B]
        g = 2 * th[:, None, :d] * e[..., None]  # [N, B, d]
        mc_mean = g.mean(0)
        mc_var = g.var(0)
        se_mean = (mc_var / N).sqrt()
        se_var = (((g - mc_mean) ** 4).mean(0) - mc_var ** 2).clamp_min(0).sqrt() / math.sqrt(N)
        assert torch.all((mu[k] - mc_mean).abs() <= 5 * se_mean)
        assert torch.all((var[k] - mc_var).abs() <= 5 * se_var)
        # the missing-trace-term variant must be rejected by this tolerance
        cov = torch.cholesky_inverse(torch.linalg.cholesky(prec))
        v = (X @ cov * X).sum(-1)
        wrong = var[k] - 4 * cov.diagonal()[:d] * v[:, None]
        assert torch.any((wrong - mc_var).abs() > 20 * se_var)


def test_regression_moments_equal_paper_eq4_diagonal():
    """The diagonal of the paper's full second-moment matrix (Eq. 4, no bias) minus E[g]^2."""
    g = torch.Generator().manual_seed(3)
    d, B = 5, 7
    A = torch.randn(d, d, generator=g, dtype=DT)
    S = A @ A.T * 0.3
    m = torch.randn(d, generator=g, dtype=DT)
    H = torch.randn(B, d, generator=g, dtype=DT)
    Y = torch.randn(B, generator=g, dtype=DT)
    mu, var = P.regression_moments(H, Y[:, None], m[None], S[None], d)
    Mm = torch.outer(m, m)
    SM = S + Mm
    for i in range(B):
        h, y = H[i], Y[i]
        Ai = torch.outer(h, h)
        E2 = 4 * (y ** 2 * SM - 2 * y * (torch.outer(m, h) @ SM + SM @ torch.outer(h, m)
                                         + (h @ m) * (S - Mm))
                  + SM @ (Ai + Ai.T) @ SM + torch.trace(Ai @ S) * SM + (m @ Ai @ m) * (S - Mm))
        E1 = 2 * (S @ h + m * (h @ m - y))
        torch.testing.assert_close(mu[0, i], E1, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(var[0, i] + mu[0, i] ** 2, E2.diagonal(), rtol=1e-10, atol=1e-10)


# ------------------------------------------------------------------------------------------------
# vanishing covariance -> precision-weighted mean of the back-propagated gradients
# ------------------------------------------------------------------------------------------------

def _pin_prior_to_heads(m, heads, eps):
    for k, head in enumerate(heads):
        theta = torch.cat([head.weight.detach(), head.bias.detach()[:, None]], 1).reshape(-1)
        m.set_prior(k, theta, torch.eye(theta.numel(), dtype=DT) / eps)


def test_vanishing_covariance_regression_is_precision_weighted_mean_of_G():
    """Prior N(head, eps I), eps -> 0: the posterior mean is the head and, to first order in
    eps, Var[g_ij] = 4 eps ((w_j h_ij + e_i)^2 + w_j^2 (|x_i|^2 - h_ij^2)) with e_i = x_i^T theta - y_i.
    The direction must be sum_k alpha_k G_k with alpha_k ∝ Var^{-s}; with s = 0 it is G.mean(0)."""
    kinds = ["regression"] * 3
    B, d, eps, s = 8, 5, 1e-10, 0.9
    heads = make_heads(kinds, d)
    m = BayesAgg(3, kinds, power_regression=s, var_floor=1e-300)  # variances are O(eps) here
    m0 = BayesAgg(3, kinds, power_regression=0.0)
    m.aggregate(batch(kinds, heads, B, d, seed=2))  # creates the prior tensors ...
    m0.aggregate(batch(kinds, heads, B, d, seed=2))  # ... and writes the regression heads
    _pin_prior_to_heads(m, heads, eps)
    _pin_prior_to_heads(m0, heads, eps)
    ctx = batch(kinds, heads, B, d, seed=2)  # G of the current heads
    X = aug(ctx.h)
    lam = []
    for k, head in enumerate(heads):
        w = head.weight.detach()[0]
        e = X @ torch.cat([w, head.bias.detach()]) - ctx.targets[:, k]
        v1 = 4 * eps * ((w * ctx.h + e[:, None]) ** 2
                        + w ** 2 * ((X ** 2).sum(1, keepdim=True) - ctx.h ** 2))
        lam.append(v1 ** -s)
    lam = torch.stack(lam)
    expected = (lam / lam.sum(0) * ctx.G).sum(0)

    out = m.aggregate(ctx)
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-12)
    assert not torch.allclose(out, ctx.G.mean(0), rtol=1e-3)  # the weights matter here
    torch.testing.assert_close(m0.aggregate(ctx), ctx.G.mean(0), rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("moments", ["mc", "quadrature"])
def test_vanishing_covariance_classification_equal_precisions_is_mean_of_G(moments):
    kinds = ["binary", "multiclass", "binary"]
    B, d, eps = 10, 4, 1e-12
    heads = make_heads(kinds, d)
    ctx = batch(kinds, heads, B, d, seed=4)
    m = BayesAgg(3, kinds, power_classification=0.0, mc_samples=64,
                 classification_moments=moments)
    m.aggregate(ctx)
    _pin_prior_to_heads(m, heads, eps)
    torch.testing.assert_close(m.aggregate(ctx), ctx.G.mean(0), rtol=1e-4, atol=1e-9)


def test_vanishing_covariance_binary_precision_weighted():
    """Binary tasks, s = 1, quadrature moments: linearising g = w r(x^T theta) around the head
    gives Var[g_ij] = eps ((r + w_j r' h_ij)^2 + w_j^2 r'^2 (|x_i|^2 - h_ij^2))."""
    kinds = ["binary"] * 3
    B, d, eps = 9, 4, 1e-9
    heads = make_heads(kinds, d, scale=1.0)
    ctx = batch(kinds, heads, B, d, seed=5)
    X = aug(ctx.h)
    lam = []
    for k, head in enumerate(heads):
        w = head.weight.detach()[0]
        p = torch.sigmoid(X @ torch.cat([w, head.bias.detach()]))
        r, r1 = (p - ctx.targets[:, k])[:, None], (p * (1 - p))[:, None]
        v1 = eps * ((r + w * r1 * ctx.h) ** 2 + w ** 2 * r1 ** 2 * ((X ** 2).sum(1, keepdim=True)
                                                                    - ctx.h ** 2))
        lam.append(1 / v1)
    lam = torch.stack(lam)
    expected = (lam / lam.sum(0) * ctx.G).sum(0)
    m = BayesAgg(3, kinds, power_classification=1.0, classification_moments="quadrature",
                 var_floor=1e-300)
    m.aggregate(ctx)
    _pin_prior_to_heads(m, heads, eps)
    torch.testing.assert_close(m.aggregate(ctx), expected, rtol=1e-4, atol=1e-12)


def test_precision_weights_formula():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(3, 4, 5, generator=g, dtype=DT)
    var = torch.rand(3, 4, 5, generator=g, dtype=DT) + 0.1
    s = torch.tensor([0.9, 0.005, 0.5], dtype=DT)
    mask = torch.ones(3, 4, dtype=torch.bool)
    mask[1, 2] = False
    mask[:, 3] = False
    a = P.precision_weights(mu, var, s, mask, 1e-12)
    lam = var ** -s[:, None, None] * mask[..., None]
    ref = lam / lam.sum(0).clamp_min(1e-300)
    torch.testing.assert_close(a, ref)
    assert torch.all(a[:, 3] == 0) and torch.all(a[1, 2] == 0)


# ------------------------------------------------------------------------------------------------
# Laplace / Newton posterior of classification heads
# ------------------------------------------------------------------------------------------------

def _random_spd(n, g, scale=1.0):
    A = torch.randn(n, n, generator=g, dtype=DT)
    return scale * (A @ A.T / n + torch.eye(n, dtype=DT))


@pytest.mark.parametrize("kind", ["binary", "multiclass"])
def test_laplace_mean_is_one_newton_step(kind):
    """Posterior mean = theta_hat - H^{-1} grad of the batch objective
    sum_i loss_i(theta) + 1/2 (theta - m_p)^T Lambda_p (theta - m_p) at the current head, with H
    from torch.autograd.functional.hessian (the GGN equals the Hessian for a linear head);
    precision = H. One label is missing and must not enter the objective."""
    kinds = [kind, "regression"]
    B, d, C = 12, 3, 4
    heads = make_heads(kinds, d, n_classes=C, scale=1.0)
    g = torch.Generator().manual_seed(7)
    h = torch.randn(B, d, generator=g, dtype=DT)
    T = make_targets(kinds, B, g, C)
    T[3, 0] = float("nan")
    ctx = make_ctx(kinds, heads, h, T)
    m = BayesAgg(2, kinds, mc_samples=16)
    m.aggregate(ctx)
    n = (C if kind == "multiclass" else 1) * (d + 1)
    mp = torch.randn(n, generator=g, dtype=DT)
    Lp = _random_spd(n, g, 2.0)
    m.set_prior(0, mp, Lp)
    m.aggregate(ctx)
    mean, prec = m.last_posterior(0)

    X = aug(h)
    keep = ~torch.isnan(T[:, 0])
    Xk, yk = X[keep], T[keep, 0]
    head = heads[0]
    theta_hat = torch.cat([head.weight.detach(), head.bias.detach()[:, None]], 1).reshape(-1)

    def objective(theta):
        if kind == "binary":
            nll = F.binary_cross_entropy_with_logits(Xk @ theta, yk, reduction="sum")
        else:
            nll = F.cross_entropy(Xk @ theta.reshape(C, d + 1).T, yk.long(), reduction="sum")
        dlt = theta - mp
        return nll + 0.5 * dlt @ Lp @ dlt

    Hs = torch.autograd.functional.hessian(objective, theta_hat)
    th = theta_hat.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(objective(th), th)
    newton = theta_hat - torch.linalg.solve(Hs, grad)
    torch.testing.assert_close(prec, Hs, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(mean, newton, rtol=1e-10, atol=1e-10)
    assert not torch.allclose(mean, theta_hat, atol=1e-3)


# ------------------------------------------------------------------------------------------------
# full-data prior
# ------------------------------------------------------------------------------------------------

def test_full_data_prior_updates_once_per_epoch_and_is_used_by_every_batch():
    kinds = ["regression", "binary", "regression"]
    B, d, ps = 10, 3, 2.0
    heads = make_heads(kinds, d)
    m = BayesAgg(3, kinds, prior_scale=ps, mc_samples=32)
    D = d + 1
    iso_prec = torch.eye(D, dtype=DT) / ps
    seed = 100

    def expected_reg_posterior(X, y, pm, pP):
        prec = pP + X.T @ X
        return torch.linalg.solve(prec, pP @ pm + X.T @ y), prec

    prior = {0: (torch.zeros(D, dtype=DT), iso_prec), 2: (torch.zeros(D, dtype=DT), iso_prec)}
    versions = []
    for epoch in range(3):
        Hs, Ts = [], []
        for step in range(3):
            seed += 1
            ctx = batch(kinds, heads, B, d, seed)
            m.aggregate(ctx)
            versions.append(m.prior_version)
            X = aug(ctx.h)
            for k in (0, 2):  # every batch of this epoch uses the prior of the previous epoch
                pm, pP = prior[k]
                torch.testing.assert_close(m.prior_of(k)[0], pm)
                torch.testing.assert_close(m.prior_of(k)[1], pP)
                mean, prec = expected_reg_posterior(X, ctx.targets[:, k], pm, pP)
                torch.testing.assert_close(m.last_posterior(k)[0], mean)
                torch.testing.assert_close(m.last_posterior(k)[1], prec)
                # the regression head now holds the batch posterior mean
                torch.testing.assert_close(heads[k].weight.detach()[0], mean[:d])
            Hs.append(ctx.h)
            Ts.append(ctx.targets)
        before = m.prior_of(1)[0].clone()
        m.end_epoch(torch.zeros(3))
        assert m.prior_version == epoch + 1
        X = aug(torch.cat(Hs))
        T = torch.cat(Ts)
        for k in (0, 2):  # full-data posterior under the isotropic prior
            mean, prec = expected_reg_posterior(X, T[:, k], torch.zeros(D, dtype=DT), iso_prec)
            torch.testing.assert_close(m.prior_of(k)[0], mean)
            torch.testing.assert_close(m.prior_of(k)[1], prec)
            torch.testing.assert_close(heads[k].bias.detach()[0], mean[d])
            prior[k] = (mean, prec)
        # binary: Newton step from the current head on all the epoch's data
        th = torch.cat([heads[1].weight.detach()[0], heads[1].bias.detach()])
        p = torch.sigmoid(X @ th)
        Hb = X.T @ (X * (p * (1 - p))[:, None]) + iso_prec
        gb = X.T @ (p - T[:, 1]) + iso_prec @ th
        torch.testing.assert_close(m.prior_of(1)[0], th - torch.linalg.solve(Hb, gb))
        torch.testing.assert_close(m.prior_of(1)[1], Hb)
        assert not torch.allclose(before, m.prior_of(1)[0])
    assert versions == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    m.end_epoch(torch.zeros(3))  # nothing accumulated -> no new prior
    assert m.prior_version == 3


# ------------------------------------------------------------------------------------------------
# fast approximation vs Monte Carlo
# ------------------------------------------------------------------------------------------------

def test_quadrature_binary_moments_agree_with_monte_carlo():
    """Gauss-Hermite moments vs the method's MC path (J = 32768) and vs an independent MC in
    float64 (N = 200k) from the same posterior. Tolerance: 5 combined standard errors,
    estimated from the reference draws, plus 1e-6 relative for quadrature error."""
    kinds = ["binary", "binary"]
    B, d, J, N = 7, 4, 32768, 200_000
    heads = make_heads(kinds, d, scale=1.0)
    ctx = batch(kinds, heads, B, d, seed=11)
    mq = BayesAgg(2, kinds, classification_moments="quadrature")
    mq.aggregate(ctx)
    mu_q, var_q = mq.last_moments()
    mm = BayesAgg(2, kinds, classification_moments="mc", mc_samples=J,
                  generator=torch.Generator().manual_seed(5))
    mm.aggregate(ctx)
    mu_m, var_m = mm.last_moments()
    X = aug(ctx.h)
    for k in range(2):
        mean, prec = mq.last_posterior(k)
        torch.testing.assert_close(mm.last_posterior(k)[0], mean)
        th = sample_theta(mean, prec, N, seed=20 + k)
        r = torch.sigmoid(th @ X.T) - ctx.targets[:, k]
        g = th[:, None, :d] * r[..., None]
        ref_mu, ref_var = g.mean(0), g.var(0)
        sd_mu = ref_var.sqrt()
        sd_var = (((g - ref_mu) ** 4).mean(0) - ref_var ** 2).clamp_min(0).sqrt()
        tol_mu_q = 5 * sd_mu / math.sqrt(N) + 1e-6 * ref_mu.abs()
        tol_var_q = 5 * sd_var / math.sqrt(N) + 1e-6 * ref_var
        assert torch.all((mu_q[k] - ref_mu).abs() <= tol_mu_q)
        assert torch.all((var_q[k] - ref_var).abs() <= tol_var_q)
        c = math.sqrt(1 / N + 1 / J)
        assert torch.all((mu_m[k] - mu_q[k]).abs() <= 5 * sd_mu * c)
        assert torch.all((var_m[k] - var_q[k]).abs() <= 5 * sd_var * c)
        assert var_q[k].min() > 1e-4  # a real, non-degenerate uncertainty was tested


def test_multiclass_mc_moments_match_reference_monte_carlo():
    kinds = ["multiclass"]
    B, d, C, J, N = 5, 3, 3, 16384, 100_000
    heads = make_heads(kinds, d, n_classes=C, scale=1.0)
    ctx = batch(kinds, heads, B, d, seed=12, n_classes=C)
    m = BayesAgg(1, kinds, mc_samples=J)
    m.aggregate(ctx)
    g = torch.Generator().manual_seed(31)  # a strongly correlated prior: the factor's layout matters
    n = C * (d + 1)
    A = torch.randn(n, n, generator=g, dtype=DT)
    m.set_prior(0, torch.randn(n, generator=g, dtype=DT), A @ A.T + 0.05 * torch.eye(n, dtype=DT))
    m.aggregate(ctx)
    mu, var = m.last_moments()
    mean, prec = m.last_posterior(0)
    th = sample_theta(mean, prec, N, seed=30).reshape(N, C, d + 1)
    X = aug(ctx.h)
    r = torch.softmax(torch.einsum("ncD,bD->nbc", th, X), -1) \
        - F.one_hot(ctx.targets[:, 0].long(), C).to(DT)
    g = torch.einsum("nbc,ncd->nbd", r, th[..., :d])
    ref_mu, ref_var = g.mean(0), g.var(0)
    sd_var = (((g - ref_mu) ** 4).mean(0) - ref_var ** 2).clamp_min(0).sqrt()
    c = math.sqrt(1 / N + 1 / J)
    assert torch.all((mu[0] - ref_mu).abs() <= 5 * ref_var.sqrt() * c)
    assert torch.all((var[0] - ref_var).abs() <= 5 * sd_var * c)


# ------------------------------------------------------------------------------------------------
# state, NaN, K = 1, numerical safety, registry
# ------------------------------------------------------------------------------------------------

def test_state_dict_round_trip_is_bit_exact():
    kinds = ["regression", "binary", "multiclass"]
    B, d = 8, 3
    heads = make_heads(kinds, d)
    m = BayesAgg(3, kinds, mc_samples=64)
    seeds = iter(range(200, 300))
    for _ in range(2):
        m.aggregate(batch(kinds, heads, B, d, next(seeds)))
    m.end_epoch(torch.zeros(3))
    m.aggregate(batch(kinds, heads, B, d, next(seeds)))  # mid-epoch buffers are non-empty
    state = copy.deepcopy(m.state_dict())
    heads_saved = copy.deepcopy(heads)
    plan = [next(seeds), next(seeds), "end", next(seeds), next(seeds)]

    def run(method, hs):
        outs = []
        for s in plan:
            if s == "end":
                method.end_epoch(torch.zeros(3))
            else:
                outs.append(method.aggregate(batch(kinds, hs, B, d, s)))
        return outs + [method.prior["bin_mean"], method.prior["mc_prec"][0]]

    ref = run(m, heads)
    m2 = BayesAgg(3, kinds, mc_samples=64)
    m2.load_state_dict(state)
    m2.set_heads(heads_saved)
    got = run(m2, heads_saved)
    assert m2.prior_version == m.prior_version == 2
    for a, b in zip(ref, got):
        assert torch.equal(a, b)


def test_nan_targets_are_ignored():
    kinds = ["regression", "binary", "regression"]
    B, d = 9, 4
    heads = make_heads(kinds, d)
    g = torch.Generator().manual_seed(9)
    h = torch.randn(B, d, generator=g, dtype=DT)
    T = make_targets(kinds, B, g)
    T[2, 0] = float("nan")
    T[5, 1] = float("nan")
    T[7, :] = float("nan")  # no label at all
    ctx = make_ctx(kinds, heads, h, T)
    m = BayesAgg(3, kinds, mc_samples=128)
    out = m.aggregate(ctx)
    assert torch.isfinite(out).all()
    alpha = m.last_weights()
    mu, _ = m.last_moments()
    assert torch.all(alpha[0, 2] == 0) and torch.all(alpha[1, 5] == 0)
    assert torch.all(alpha[:, 7] == 0) and torch.all(out[7] == 0)
    torch.testing.assert_close(alpha[:, [0, 1, 3]].sum(0), torch.ones(3, d, dtype=DT))
    torch.testing.assert_close(out[2], (alpha[1:, 2] * mu[1:, 2]).sum(0) / B)
    # task 0's posterior is the posterior on the labelled rows only
    keep = ~torch.isnan(T[:, 0])
    X = aug(h)[keep]
    prec = torch.eye(d + 1, dtype=DT) + X.T @ X
    torch.testing.assert_close(m.last_posterior(0)[1], prec)
    torch.testing.assert_close(m.last_posterior(0)[0], torch.linalg.solve(prec, X.T @ T[keep, 0]))
    m.end_epoch(torch.zeros(3))
    assert all(torch.isfinite(t).all() for t in (m.prior["reg_mean"], m.prior["bin_mean"]))
    assert not m.prior["reg_shared"]  # the two regression tasks saw different rows


@pytest.mark.parametrize("kind", ["regression", "binary", "multiclass"])
def test_single_task(kind):
    B, d = 6, 3
    heads = make_heads([kind], d)
    ctx = batch([kind], heads, B, d, seed=13)
    m = build("bayesagg", 1, task_kinds=[kind], mc_samples=32)
    out = m.aggregate(ctx)
    mu, _ = m.last_moments()
    assert torch.all(m.last_weights() == 1)
    torch.testing.assert_close(out, mu[0] / B)
    m.end_epoch(torch.zeros(1))
    assert torch.isfinite(m.aggregate(ctx)).all()


def test_jitter_retry_and_error_names_the_task():
    kinds = ["regression", "binary"]
    B, d = 2, 4
    heads = make_heads(kinds, d)
    ctx = batch(kinds, heads, B, d, seed=14)
    m = BayesAgg(2, kinds, mc_samples=16)
    m.aggregate(ctx)
    zero = torch.zeros(d + 1, d + 1, dtype=DT)
    m.set_prior(0, torch.zeros(d + 1, dtype=DT), zero)  # rank-2 precision: needs jitter
    assert torch.isfinite(m.aggregate(ctx)).all()
    with torch.no_grad():
        heads[1].weight[0, 0] = float("nan")
    with pytest.raises(P.BayesAggNumericalError, match=r"task 1 \(binary\)"):
        m.aggregate(batch(kinds, heads, B, d, seed=15))


def test_registry_flags_and_hparams():
    m = build("bayesagg", 3, task_kinds=["regression", "binary", "multiclass"])
    assert isinstance(m, BayesAgg) and BayesAgg.warm_start
    assert [m.learns_head(k) for k in range(3)] == [False, True, True]
    for name in ("power_regression", "power_classification", "mc_samples", "prior_scale",
                 "jitter", "classification_moments"):
        assert name in BayesAgg.hparam_names()
    assert m.hp["power_regression"] == 0.9 and m.hp["power_classification"] == 5e-3
    assert m.hp["mc_samples"] == 1024 and m.hp["prior_scale"] == 1.0
    with pytest.raises(ValueError):
        build("bayesagg", 1, task_kinds=["ordinal"])
    with pytest.raises(ValueError):
        build("bayesagg", 1, classification_moments="probit")


def test_float32_inputs_and_generator_determinism():
    kinds = ["regression", "binary", "multiclass"]
    B, d = 16, 5
    heads = [hd.float() for hd in make_heads(kinds, d)]
    g = torch.Generator().manual_seed(3)
    h = torch.randn(B, d, generator=g)
    T = make_targets(kinds, B, g).float()
    outs = []
    for _ in range(2):
        m = BayesAgg(3, kinds, mc_samples=64, generator=torch.Generator().manual_seed(1))
        ctx = make_ctx(kinds, heads, h, T)
        outs.append(m.aggregate(ctx))
    assert outs[0].dtype == torch.float32 and torch.equal(outs[0], outs[1])


@pytest.mark.parametrize("kinds", [["regression", "binary", "binary"],
                                   ["regression", "binary", "multiclass"]])
def test_weights_for_a_fixed_logging_set_has_no_side_effects(kinds):
    B, d = 8, 3
    heads = make_heads(kinds, d)
    m = BayesAgg(3, kinds, classification_moments="quadrature", mc_samples=32)
    m.aggregate(batch(kinds, heads, B, d, seed=40))
    m.end_epoch(torch.zeros(3))
    log = batch(kinds, heads, 5, d, seed=41)
    snap = [p.detach().clone() for hd in heads for p in hd.parameters()]
    gen_state = m.generator.get_state().clone()
    n_buf, version = len(m._buf_h), m.prior_version
    w = m.weights_for(log.h, log.targets, heads)
    assert w.shape == (3, 5, d) and m.weights_for(log.h, log.targets, heads, "dims").shape == (3, 5)
    assert all(torch.equal(a, p) for a, p in zip(snap, (p for hd in heads for p in hd.parameters())))
    assert torch.equal(m.generator.get_state(), gen_state)
    assert len(m._buf_h) == n_buf and m.prior_version == version
    if "multiclass" not in kinds:  # regression + binary quadrature: deterministic, as a real step
        m.aggregate(log)
        torch.testing.assert_close(w, m.last_weights(), rtol=1e-10, atol=1e-12)


def test_prior_scale_is_set_per_task_type():
    """Regression and classification heads get their own isotropic prior variance."""
    import torch

    from mtlrepro.methods.bayesagg import BayesAgg

    heads = torch.nn.ModuleList([torch.nn.Linear(4, 1), torch.nn.Linear(4, 1)])
    m = BayesAgg(2, ["regression", "binary"], prior_scale=2.0, prior_scale_classification=0.01)
    m._ensure_dims(heads, 4, torch.device("cpu"))
    prior = m._isotropic_prior(4, torch.device("cpu"))
    assert torch.allclose(prior["reg_prec"][0].diagonal(), torch.full((5,), 0.5, dtype=prior["reg_prec"].dtype))
    assert torch.allclose(prior["bin_prec"][0].diagonal(), torch.full((5,), 100.0, dtype=prior["bin_prec"].dtype))
    assert BayesAgg(2, ["regression", "binary"], prior_scale=3.0).hp["prior_scale_classification"] == 3.0
