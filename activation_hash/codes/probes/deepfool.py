"""Network probe ``deepfool``: DeepFool robustness (Moosavi-Dezfooli et al. 2016), as used by
Sbailò & Ghiringhelli: mean ||r|| / ||x|| over a seeded sample of test images, where r is the
(overshot) perturbation DeepFool finds to change the network's prediction.

Multi-class DeepFool, batched: at each of at most ``max_iter`` steps every still-unflipped sample
moves by the minimal step to the nearest linearised boundary, l = argmin_k |f_k - f_k0| / ||w_k||
with w_k = grad(f_k - f_k0), r_i = (|f_l - f_k0| + 1e-4) / ||w_l||^2 w_l; the perturbation is
(1 + overshoot) * sum r_i. For an affine classifier one step lands on the nearest decision
hyperplane, so ||r|| = (1 + overshoot) (min_k |f_k - f_k0| / ||w_k - w_k0|| + 1e-4 / ||w_l||) exactly
(tests/test_binary_encoding.py). Samples not flipped after ``max_iter`` steps count with their last r.
Written here because no maintained implementation (torchattacks, foolbox) is installed.
"""

from __future__ import annotations

import torch

from activation_hash.codes.probes import NetworkProbe


def deepfool(model: torch.nn.Module, x: torch.Tensor, overshoot: float = 0.02, max_iter: int = 50) -> torch.Tensor:
    """The DeepFool perturbation of each sample of ``x`` (same shape as x)."""
    with torch.no_grad():
        k0 = model(x).argmax(1)
    r_tot = torch.zeros_like(x)
    active = torch.ones(len(x), dtype=torch.bool, device=x.device)
    rows = torch.arange(len(x), device=x.device)
    for _ in range(max_iter):
        x_adv = (x + (1 + overshoot) * r_tot).detach().requires_grad_(True)
        logits = model(x_adv)
        active &= logits.argmax(1) == k0
        if not active.any():
            break
        grads = torch.stack([torch.autograd.grad(logits[:, k].sum(), x_adv, retain_graph=True)[0]
                             for k in range(logits.shape[1])], 1)          # (n, C, *shape)
        w = (grads - grads[rows, k0].unsqueeze(1)).flatten(2)              # (n, C, d)
        f = (logits - logits[rows, k0].unsqueeze(1)).detach()              # (n, C)
        norm = w.norm(dim=2)
        distance = f.abs() / norm.clamp_min(1e-12)
        distance[rows, k0] = float("inf")
        l = distance.argmin(1)
        step = ((f[rows, l].abs() + 1e-4) / norm[rows, l].clamp_min(1e-12) ** 2).unsqueeze(1) * w[rows, l]
        r_tot = r_tot + (step.view_as(x) * active.view(-1, *[1] * (x.dim() - 1)))
    return ((1 + overshoot) * r_tot).detach()


def _compute(model, data, layers, *, n_samples: int = 100, pool: int = 1000, seed: int = 0,
             overshoot: float = 0.02, max_iter: int = 50) -> dict:
    x, _ = data.test_batch(max(pool, n_samples))
    generator = torch.Generator().manual_seed(seed)
    index = torch.randperm(len(x), generator=generator)[:n_samples].to(x.device)
    x = x[index].float()
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            r = deepfool(model, x, overshoot, max_iter)
    finally:
        model.train(was_training)
    ratio = r.flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1).clamp_min(1e-12)
    return {"test/deepfool_ratio": float(ratio.mean())}


PROBE = NetworkProbe(name="deepfool", compute=_compute,
                     options={"n_samples": 100, "pool": 1000, "seed": 0, "overshoot": 0.02, "max_iter": 50},
                     description="DeepFool mean ||r||/||x|| on a seeded sample of test images")
