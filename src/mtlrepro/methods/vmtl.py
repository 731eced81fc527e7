"""VMTL: variational multi-task learning with Gumbel-Softmax priors (Shen, Zhen, Worring & Shao,
NeurIPS 2021), and its amortised-classifier variant (`vmtl_amortized`).

Model (Sec. 2.1-2.2). For task t and example n, a latent representation z_t,n and a classifier
w_t are Gaussian latent variables with fully factorised variational posteriors:
  q(z_t,n | x_n) = N(mu_t(h_n), diag sigma_t^2(h_n))     amortised inference network per task
  q(w_t)         = prod_c N(mu_t,c, diag sigma_t,c^2)     (Eq. 8; direct parameters), or, for
                   `vmtl_amortized`, (mu_t,c, sigma_t,c) = g(mean feature of class c of task t),
                   one inference network g shared by all classes and tasks.
Each prior is a mixture of the OTHER tasks' variational posteriors from the previous iteration
(Eq. 6, Eq. 9), with Gumbel-Softmax mixing weights (Eq. 7)
  alpha_t,i = softmax_i((log pi_t,i + g_t,i) / tau),  i != t,  g = -log(-log u),  u ~ U(0, 1),
with learnable pi (separate for representations and classifiers). The representation prior of
z_t,n is sum_{i != t} beta_t,i q_phi_i(z | f(x_n, D_i)), where f is the cross-attention of Eq. 10,
softmax(x_n D_i,c^T / sqrt(d)) D_i,c, over the examples of task i with the same label as x_n
(its class c in its own task t, the label space being shared in the paper).

Objective (Eq. 11), per task and averaged over the task's examples:
  1/(LM) sum_l sum_m -log p(y | z^(l), w^(m))                     L x M Monte-Carlo samples
  + kl_z_weight * sum_{i != t} beta_t,i KL(q(z_t,n) || q_i(z | f(x_n, D_i)))
  + kl_w_weight / N_t * sum_{i != t} alpha_t,i KL(q(w_t) || q(w_i))
the KL terms being the closed-form upper bound of the KL to a mixture the paper uses
(KL(q || sum_i a_i p_i) <= sum_i a_i KL(q || p_i)), and 1/N_t the per-example share of the
task-level classifier KL of Eq. 5 (N_t = `task_sizes`, which the training loop passes).
Prediction (Eq. 12): the average of the predictive probabilities over L x M samples, returned as
log-probabilities (multi-class) / the logit of the averaged probability (binary) / the mean
(regression). Task losses are summed over tasks as in `ls` (the paper's 1/T is a constant
factor).

Adaptations to hard parameter sharing (all tasks see the same inputs here; in the paper each
task has its own inputs and all share one label space):
* q(z_t | x) has a task-specific inference network phi_t (a shared one, as in the paper, would
  give every task the same z since the inputs are shared); the prior component from task i is
  q_phi_i(z | f(h_n, D_i)), task i's posterior network applied to the aggregate.
* D_i,c (Eq. 10) = the other examples of the batch labelled for task i whose task-i label is c,
  the class of x_n in task i's label space (`query_class`): x_n's task-i label where it has one
  (rows labelled for every task; in the paper's shared label space it would be x_n's own class,
  here it is the only class of task i that x_n carries), else its own task-t label y_t,n, as in
  the paper, when task i shares task t's label space (`shares_label_space`: two classification
  tasks with as many classes, the classes the classifier KL aligns). One-label-per-row data
  (digits-domains' domains, TweetEval's binary tasks) are thus conditioned on y_t,n too. With no
  class of task i for x_n (regression, a different number of classes, no label) or no example
  of class c in the batch, D_i = all labelled examples of task i. x_n itself is never a key.
  The prior of task t is thus built per pair (t, i). The prior inputs are detached (the
  authors' code detaches prior means and variances).
* Classifier KL between tasks with different numbers of classes: each class vector of task t
  gets as prior the uniform mixture of task i's class vectors (again bounded by the average KL);
  with equal numbers of classes the classes are aligned as in the paper. Binary tasks keep two
  class vectors (output s_1 - s_0, so sigmoid(output) = softmax(s)_1); regression one.
  Each classifier vector includes a bias coordinate (z is extended with a constant 1).
* "Previous iteration" posteriors: the other tasks' current, detached posteriors (their
  parameters are those after the previous update), as the authors' code does.
* The Monte-Carlo likelihood of Eq. 11 has L x M terms but the loop computes one task loss from
  one output: train-mode heads return the (l=0, m=0) sample's output and the regulariser adds
  mean_lm CE_lm - CE_00, so the total gradient is exactly that of Eq. 11 (the per-task losses the
  loop logs are the single-sample ones).
* `vmtl_amortized`: the class means are exponential moving averages (centre_momentum) of the
  detached shared representations of the class's training examples, kept as buffers (saved with
  the model and used at evaluation); they are updated after each step's forward (the classifier
  of a step is generated from the means up to the previous step). The authors' code keeps a
  cumulative mean of fixed pre-extracted features; with a trained encoder a moving average
  forgets stale features. g is one ELU hidden layer (width latent_dim) with linear mean and
  log-variance outputs.
* With a single task there are no other tasks: both priors are N(0, I).
Not reproduced from the authors' code (not in the paper): the N(0, I) priors of the first few
iterations, the annealing of tau (exp decay to 0.5) and of the classifier-KL weight (growing from
0 by 1e-6 every 10 iterations), input dropout 0.7 in the inference network, and local
reparameterisation.

The representation-KL weight (kl_z_weight) is NOT the paper's 1 (Eq. 11 weighs the per-example
representation KL like the likelihood). Weight 1 makes training fail here. On digits-mtl (shared
inputs, 15 epochs) training diverges (the tasks' posterior means chase each other's detached
priors through the shared encoder): test accuracy 0.63, below the 0.90 of a constant predictor;
weight 0.1: 0.65, 1e-2: 0.9955, 1e-3: 0.997, 1e-7 (the authors' code, `eta`): 0.996, 0: 0.995.
On digits-domains (the paper's own setting: one domain and one 10-class task per image;
params.yaml's block, 40 epochs, mean test accuracy over the 5 domains, seeds 0-4) weight 1
collapses the representation onto its prior (the training cross-entropy stays at log 10):
0.115 +- 0.011, chance being 0.10; 0.1 (seeds 0-2): 0.43; 1e-2 (seeds 0-2): 0.829; 1e-3:
0.817 +- 0.013; 0: 0.814 +- 0.011. The default 1e-3 keeps the cross-task representation
prior active while staying an order of magnitude below where it starts to hurt. The classifier
KL keeps the paper's weight: Eq. 11 counts it once per task against N_t per-example terms, so it
enters each example's share as KL / N_t with kl_w_weight 1 (the same order as the authors'
annealed weight, ~1e-3).

Hyper-parameters:
  latent_dim       null   width of z (null: the representation width; the authors' code: 512)
  tau              1.0    Gumbel-Softmax temperature (the authors' code default)
  z_samples (L)    10     Monte-Carlo samples of z (paper: L = M = 10)
  w_samples (M)    10     Monte-Carlo samples of w
  kl_z_weight      1e-3   weight of the representation KL (paper: 1; see above)
  kl_w_weight      1.0    weight of the classifier KL, applied to KL / N_t (paper: 1)
  init_logvar_z    0.0    initial bias of the representation log-variance (sigma ~ 1: the
                          authors' local reparameterisation starts with a broad z as well)
  init_logvar_w    -6.0   initial classifier log-variance (sigma ~ 0.05 = softplus(-3), the
                          authors' initial classifier scale)
  eval_seed        0      seed of the evaluation-time Monte-Carlo draws (re-seeded per forward)
  task_sizes       null   N_t, training examples per task (set by the loop; null: N_t = 1)
  centre_momentum  0.9    (vmtl_amortized only) moving-average momentum of the class means
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from ._probabilistic import (ForwardCache, ProbabilisticWeighting, SharedRef, clamp_logvar, eval_source,
                             gumbel_softmax_weights, kl_diag_gaussians, kl_mixture_upper_bound,
                             kl_standard_normal, mc_average_output, mixing_matrix, n_score_vectors,
                             new_linear, reparameterize, scores_to_output)
from .rlw import RandomSource


# ---------------------------------------------------------------- pure pieces


def cross_attention_aggregate(h: Tensor, labels: Tensor, kind: str, query: Tensor | None = None) -> Tensor:
    """Eq. 10 for every example n of the batch against task i's data D_i:
    softmax(h_n D_i,c^T / sqrt(d)) D_i,c, with D_i,c the other examples whose task-i label
    equals query_n, the class of x_n read in task i's label space (default: its own task-i label;
    `query_class`), else all other examples labelled for task i (regression tasks, no class, or
    no example of the class). Rows with no key at all keep h_n. h: [B, d]; labels, query: [B]
    (NaN: no label / no class)."""
    B, d = h.shape
    query = labels if query is None else query
    labelled = ~torch.isnan(labels)
    not_self = ~torch.eye(B, dtype=torch.bool, device=h.device)
    keys = labelled.unsqueeze(0) & not_self
    if kind != "regression":
        same = (query.unsqueeze(1) == labels.unsqueeze(0)) & keys  # NaN never equals
        fallback = ~same.any(1, keepdim=True)
        keys = torch.where(fallback, keys, same)
    has_key = keys.any(1, keepdim=True)
    scores = (h @ h.transpose(0, 1)) / math.sqrt(d)
    scores = scores.masked_fill(~keys, float("-inf")).masked_fill(~has_key, 0.0)
    aggregate = torch.softmax(scores, 1) @ h
    return torch.where(has_key, aggregate, h)


def query_class(labels_i: Tensor, labels_t: Tensor, same_label_space: bool) -> Tensor:
    """The class c of D_i,c for x_n in task t's prior (Eq. 10: "the same label as x_t,n"): x_n's
    task-i label where it has one (the only class of task i it carries), else, when task i
    shares task t's label space, its own task-t label y_t,n; else NaN (no class of task i)."""
    if not same_label_space:
        return labels_i
    return torch.where(torch.isnan(labels_i), labels_t, labels_i)


def shares_label_space(head_t: Any, head_i: Any) -> bool:
    """Two classification tasks with the same number of class vectors: the classes the classifier
    KL aligns are taken to be the same classes (the paper's shared label space)."""
    return "regression" not in (head_t.kind, head_i.kind) and head_t.n_vec == head_i.n_vec


def classifier_kl(mu_t: Tensor, logvar_t: Tensor, mu_i: Tensor, logvar_i: Tensor) -> Tensor:
    """KL bound of q(w_t) = prod_c q(w_t,c) against task i's classifier posterior as prior:
    class-aligned when both have the same number of class vectors (the paper's shared label
    space), else each class vector of t against the uniform mixture of task i's class vectors
    (bounded by the mean KL). Inputs [C_t, D], [C_i, D]; returns a scalar."""
    if mu_t.shape == mu_i.shape:
        return kl_diag_gaussians(mu_t, logvar_t, mu_i, logvar_i).sum()
    pairwise = kl_diag_gaussians(mu_t.unsqueeze(1), logvar_t.unsqueeze(1), mu_i.unsqueeze(0), logvar_i.unsqueeze(0))
    return pairwise.mean(1).sum()


# ---------------------------------------------------------------- modules


class VMTLMixing(nn.Module):
    """The learnable Gumbel-Softmax logits, log pi up to a constant: row t over the other tasks
    (in task order, t left out). Shared by all heads. Initialised at 0 (uniform pi)."""

    def __init__(self, n_tasks: int):
        super().__init__()
        if n_tasks > 1:
            self.z_logits = nn.Parameter(torch.zeros(n_tasks, n_tasks - 1))
            self.w_logits = nn.Parameter(torch.zeros(n_tasks, n_tasks - 1))
        else:
            self.register_parameter("z_logits", None)
            self.register_parameter("w_logits", None)


class ClassifierGenerator(nn.Module):
    """The amortised classifier inference network g: a class's mean feature -> (mu, logvar) of
    its classifier vector (latent_dim + 1 with the bias). Shared by all classes and tasks."""

    def __init__(self, rep_dim: int, latent_dim: int, init_logvar: float, source: RandomSource):
        super().__init__()
        self.body = nn.Sequential(new_linear(rep_dim, latent_dim, source), nn.ELU())
        self.mu = new_linear(latent_dim, latent_dim + 1, source)
        self.logvar = new_linear(latent_dim, latent_dim + 1, source, bias_value=init_logvar)

    def forward(self, centres: Tensor) -> tuple[Tensor, Tensor]:
        x = self.body(centres)
        return self.mu(x), clamp_logvar(self.logvar(x))


class VMTLHead(nn.Module):
    """Task t's module: h [B, d] -> output. Train: one (z, w) sample's output, the L x M sample
    outputs and posteriors cached for the regulariser. Eval: the Eq. 12 Monte-Carlo average."""

    def __init__(self, index: int, task: Any, rep_dim: int, latent_dim: int, hp: dict, mixing: VMTLMixing,
                 source: RandomSource, generator: ClassifierGenerator | None = None):
        super().__init__()
        self.index = index
        self.task = task
        self.kind = task.kind
        self.n_vec = n_score_vectors(task.kind, task.out_dim)
        self.z_samples = int(hp["z_samples"])
        self.w_samples = int(hp["w_samples"])
        self.eval_seed = int(hp["eval_seed"])
        init_logvar_w = float(hp["init_logvar_w"])
        self.z_mu = new_linear(rep_dim, latent_dim, source)
        self.z_logvar = new_linear(rep_dim, latent_dim, source, bias_value=float(hp["init_logvar_z"]))
        self.mixing = mixing
        self.amortized = generator is not None
        if self.amortized:
            self.generator = generator
            self.register_buffer("centres", torch.zeros(self.n_vec, rep_dim))
            self.register_buffer("centre_seen", torch.zeros(self.n_vec))
        else:
            bound = 1.0 / math.sqrt(latent_dim + 1)
            self.w_mu = nn.Parameter(source.uniform((self.n_vec, latent_dim + 1), -bound, bound, device="cpu"))
            self.w_logvar = nn.Parameter(torch.full((self.n_vec, latent_dim + 1), init_logvar_w))
        self._random = SharedRef(source)
        self._cache = ForwardCache()

    def z_posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.z_mu(x), clamp_logvar(self.z_logvar(x))

    def w_posterior(self) -> tuple[Tensor, Tensor]:
        if self.amortized:
            # a copy: the buffer is updated in place after the forward, before backward
            return self.generator(self.centres.clone())
        return self.w_mu, clamp_logvar(self.w_logvar)

    def sample_outputs(self, h: Tensor, source: RandomSource) -> tuple[Tensor, dict[str, Tensor]]:
        """[L, M, B, out_dim] outputs of L z-draws x M w-draws, and the posteriors."""
        mu_z, logvar_z = self.z_posterior(h)
        mu_w, logvar_w = self.w_posterior()
        mu_w, logvar_w = mu_w.to(h.dtype), logvar_w.to(h.dtype)
        z = reparameterize(mu_z, logvar_z, source, self.z_samples)          # [L, B, dz]
        w = reparameterize(mu_w, logvar_w, source, self.w_samples)          # [M, C, dz + 1]
        z1 = torch.cat([z, z.new_ones(z.shape[:-1] + (1,))], -1)
        scores = torch.einsum("lbd,mcd->lmbc", z1, w)
        post = {"mu_z": mu_z, "logvar_z": logvar_z, "mu_w": mu_w, "logvar_w": logvar_w}
        return scores_to_output(scores, self.kind), post

    def forward(self, h: Tensor) -> Tensor:
        if self.training:
            out, post = self.sample_outputs(h, self._random.value)
            self._cache.put(out=out, **post)
            return out[0, 0]
        out, _ = self.sample_outputs(h, eval_source(h.device, self.eval_seed))
        L, M, B, o = out.shape
        return mc_average_output(out.reshape(L * M, B, o), self.kind)

    def pop_cache(self) -> dict[str, Any]:
        return self._cache.pop()


# ---------------------------------------------------------------- the method


class VMTL(ProbabilisticWeighting):
    name = "vmtl"
    amortized = False
    # the priors of Eq. 9-10 need the other tasks' rows in the batch (one_task batching: one batch of each)
    needs_every_task = True
    DEFAULTS = {"latent_dim": None, "tau": 1.0, "z_samples": 10, "w_samples": 10, "kl_z_weight": 1e-3,
                "kl_w_weight": 1.0, "init_logvar_z": 0.0, "init_logvar_w": -6.0, "eval_seed": 0, "task_sizes": None}

    def __init__(self, n_tasks, task_kinds=None, generator=None, **hparams):
        super().__init__(n_tasks, task_kinds, generator, **hparams)
        self._check_positive("tau")
        self._check_nonnegative("kl_z_weight", "kl_w_weight")
        self._check_optional_dim("latent_dim")
        if self.hp["latent_dim"] == 0:
            raise ValueError(f"{self.name}: latent_dim must be >= 1")
        for key in ("z_samples", "w_samples"):
            if int(self.hp[key]) != self.hp[key] or int(self.hp[key]) < 1:
                raise ValueError(f"{self.name}: {key} must be an integer >= 1, got {self.hp[key]}")
        sizes = self.hp["task_sizes"]
        if sizes is not None and (len(sizes) != n_tasks or any(float(s) <= 0 for s in sizes)):
            raise ValueError(f"{self.name}: task_sizes must list {n_tasks} positive sizes, got {sizes}")
        if "centre_momentum" in self.hp and not 0.0 <= float(self.hp["centre_momentum"]) < 1.0:
            raise ValueError(f"{self.name}: centre_momentum must lie in [0, 1), got {self.hp['centre_momentum']}")
        self.tau = float(self.hp["tau"])

    def build_heads(self, rep_dim: int, tasks: Sequence[Any], head=None) -> nn.ModuleList:
        self._check_tasks(tasks)
        latent = rep_dim if self.hp["latent_dim"] is None else int(self.hp["latent_dim"])
        mixing = VMTLMixing(len(tasks))
        generator = (ClassifierGenerator(rep_dim, latent, float(self.hp["init_logvar_w"]), self.random)
                     if self.amortized else None)
        return nn.ModuleList(VMTLHead(k, t, rep_dim, latent, self.hp, mixing, self.random, generator)
                             for k, t in enumerate(tasks))

    # ------------------------------------------------ priors

    def mixing_weights(self, heads, device) -> tuple[Tensor, Tensor] | None:
        """[K, K] Gumbel-Softmax weights (zero diagonal) for the representation and classifier
        priors, one fresh Gumbel draw per step from the method's stream."""
        K = len(heads)
        if K < 2:
            return None
        mixing = heads[0].mixing
        u_z = self.random.uniform((K, K - 1), 0.0, 1.0, device=device)
        u_w = self.random.uniform((K, K - 1), 0.0, 1.0, device=device)
        return (mixing_matrix(gumbel_softmax_weights(mixing.z_logits, self.tau, u_z)),
                mixing_matrix(gumbel_softmax_weights(mixing.w_logits, self.tau, u_w)))

    @staticmethod
    @torch.no_grad()
    def representation_priors(heads, h: Tensor, targets: Tensor, t: int, others: Sequence[int],
                              shared: dict | None = None) -> tuple[Tensor, Tensor]:
        """[K - 1, B, dz] means and log-variances of the prior components q_phi_i(z | f(x_n, D_i)),
        i in `others`, of task t's representations: detached (the prior inputs are fixed).
        shared: a cache, over the tasks t of one step, of the components that use no task-t label."""
        hd = h.detach()
        y = targets.to(hd.dtype)
        shared = {} if shared is None else shared
        mus, logvars = [], []
        for i in others:
            same_space = shares_label_space(heads[t], heads[i])
            own_class = same_space and bool((torch.isnan(y[:, i]) & ~torch.isnan(y[:, t])).any())
            if own_class or i not in shared:
                query = query_class(y[:, i], y[:, t], same_space)
                prior = heads[i].z_posterior(cross_attention_aggregate(hd, y[:, i], heads[i].kind, query))
                if not own_class:  # the same for every t: rows queried by their task-i labels only
                    shared[i] = prior
            else:
                prior = shared[i]
            mus.append(prior[0])
            logvars.append(prior[1])
        return torch.stack(mus), torch.stack(logvars)

    def kl_terms(self, heads, caches: Sequence[dict], h: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """Per-task [K] representation KL bound (mean over the task's labelled examples) and
        classifier KL bound (before the 1/N_t scaling)."""
        K = len(heads)
        weights = self.mixing_weights(heads, h.device)
        kl_z, kl_w = [], []
        shared: dict = {}
        for t in range(K):
            c = caches[t]
            if weights is None:
                kl_n = kl_standard_normal(c["mu_z"], c["logvar_z"])
                kl_c = kl_standard_normal(c["mu_w"], c["logvar_w"]).sum()
            else:
                A_z, A_w = weights
                others = [i for i in range(K) if i != t]
                # per task t: the class of D_i,c may be x_n's task-t label (query_class)
                mu_p, logvar_p = self.representation_priors(heads, h, targets, t, others, shared)
                kl_n = kl_mixture_upper_bound(c["mu_z"], c["logvar_z"], mu_p, logvar_p, A_z[t, others])
                kl_c = sum(A_w[t, i].to(c["mu_w"]) * classifier_kl(c["mu_w"], c["logvar_w"], caches[i]["mu_w"].detach(),
                                                                     caches[i]["logvar_w"].detach())
                           for i in others)
            labelled = ~torch.isnan(targets[:, t])
            kl_z.append(kl_n[labelled].mean() if bool(labelled.any()) else kl_n.sum() * 0.0)
            kl_w.append(kl_c)
        return torch.stack(kl_z), torch.stack(kl_w)

    # ------------------------------------------------ the loss terms

    @staticmethod
    def mc_likelihood_correction(heads, caches: Sequence[dict], targets: Tensor) -> Tensor:
        """sum_t [mean_{l,m} L_t(out_lm) - L_t(out_00)]: added to the loop's single-sample task
        losses, it makes the likelihood term the L x M average of Eq. 11."""
        from ..step import task_loss  # lazy: step imports the methods package

        total = None
        for t, (head, c) in enumerate(zip(heads, caches)):
            out = c["out"]
            L, M, B, o = out.shape
            y = targets[:, t]
            term = task_loss(head.task, out.reshape(L * M * B, o), y.repeat(L * M)) - task_loss(head.task, out[0, 0], y)
            total = term if total is None else total + term
        return total

    def loss_terms(self, heads, h: Tensor, targets: Tensor) -> dict[str, Tensor]:
        caches = [head.pop_cache() if isinstance(head, VMTLHead) else {} for head in heads]
        if not all(caches):  # the heads did not run in train mode (or are not VMTL heads)
            return {}
        kl_z, kl_w = self.kl_terms(heads, caches, h, targets)
        sizes = self.hp["task_sizes"]
        n = kl_w.new_tensor([float(s) for s in sizes]) if sizes is not None else torch.ones_like(kl_w)
        terms = {"mc_likelihood": self.mc_likelihood_correction(heads, caches, targets),
                 "kl_z": float(self.hp["kl_z_weight"]) * kl_z.sum(),
                 "kl_w": float(self.hp["kl_w_weight"]) * (kl_w / n).sum()}
        if self.amortized:
            self.update_centres(heads, h, targets)
        return terms

    def regularizer(self, model, inputs, h: Tensor, targets: Tensor) -> Tensor | None:
        terms = self.loss_terms(model.heads, h, targets)
        if not terms:
            return None
        return terms["mc_likelihood"] + terms["kl_z"] + terms["kl_w"]

    @torch.no_grad()
    def update_centres(self, heads, h: Tensor, targets: Tensor) -> None:
        """vmtl_amortized: moving averages of the class means of the detached representations."""
        momentum = float(self.hp["centre_momentum"])
        hd = h.detach()
        for t, head in enumerate(heads):
            y = targets[:, t]
            labelled = ~torch.isnan(y)
            for c in range(head.n_vec):
                rows = labelled if head.kind == "regression" else labelled & (y == c)
                if not bool(rows.any()):
                    continue
                mean = hd[rows].mean(0).to(head.centres)
                if bool(head.centre_seen[c] > 0):
                    head.centres[c].mul_(momentum).add_(mean, alpha=1.0 - momentum)
                else:
                    head.centres[c].copy_(mean)
                    head.centre_seen[c] = 1.0


class VMTLAmortized(VMTL):
    """VMTL with the amortised classifier inference of Sec. 2.2."""

    name = "vmtl_amortized"
    amortized = True
    DEFAULTS = {**VMTL.DEFAULTS, "centre_momentum": 0.9}
