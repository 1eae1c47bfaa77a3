"""The torch backend of the encoding metrics: the same families on any torch device.

``metrics.backend``: ``sklearn`` (scikit-learn / faiss / numpy on the CPU, the reference),
``torch`` (this module, on ``metrics.device``, or the CPU when none), ``auto`` (torch when the
capture runs on a CUDA device, sklearn on a CPU). Torch is imported inside these functions
only: ``import activation_hash.metrics`` loads no torch.

Why hand-written torch and not faiss / cuML / scikit-learn's array API: faiss's ``Kmeans`` has
no k-means++ seeding and no scikit-learn convergence rule (it runs a fixed number of
iterations), and its GPU build is not installed (faiss-cpu only); cuML is not installable here
and cannot be tested on the CPU; scikit-learn's array-API support covers neither KMeans nor
LogisticRegression. Every solver below is a few matrix products per step, which is what a GPU
does well, and the same code runs (and is tested) on the CPU.

Families:
- redundancy: distinct packed rows by ``torch.unique(dim=0)`` on the device (exact, bytes
  compared, nothing hashed) -- equal to the numpy path; beyond half of the budget, seeded hashes
  of packed chunks on the device, repeated hashes verified byte for byte (exact as well).
- K-Means: ``n_init`` k-means++ initialisations (scikit-learn's greedy k-means++: 2 + log K
  local trials per center, the first center uniform) advanced *together*: one matrix product
  per Lloyd pass gives every row's distance to the K centers of every initialisation.
  scikit-learn's convergence rule: stop an initialisation when its labels do not change
  (strict convergence) or when its squared center shift is <= tol x mean per-bit variance;
  ``max_iter`` 300; labels rerun once against the final centers after a tolerance stop; the
  initialisation of lowest inertia wins. Empty clusters keep their previous center
  (scikit-learn moves them to far points; with K = 10 on thousands of rows this is rare).
  Two equivalent forms: *dense* (rows unpacked on the device in chunks: O(n bits R K) per pass)
  and *kernel* (the rows' Gram matrix of bit overlaps G = X X^T, computed once by a packed-bit
  product; centers are weights W over rows, c = W X, so |x_i - c|^2 = G_ii - 2 (G W^T)_i +
  (W G W^T)_cc: O(n^2 R K) per pass), used when there are more bits than rows and G fits.
  Random draws come from numpy's generator seeded by ``kmeans_seed``: not scikit-learn's
  draws, so accuracies agree statistically, not label for label (tests/test_torch_backend.py).
- K-NN: the GEMM path of ``families/knn.py`` (exact distances, exact tie expectation) on the
  device; on the CPU device too.
- logistic regression: the same estimators as scikit-learn's (L2, C = 1, intercept not
  penalized, each binary problem scaled by its row count as scikit-learn's lbfgs objective),
  solved by torch's L-BFGS (strong Wolfe). One-vs-one: all K(K-1)/2 pair problems in one
  objective (they are independent, so the joint optimum is every pair's optimum), one matrix
  product per evaluation; prediction by scikit-learn's OneVsOneClassifier rule (votes plus
  normalized confidences). ovr: K problems jointly; multinomial: softmax. Features: dense 0/1
  codes, or the exact row-space coordinates of ``families/logreg.py`` when n < bits.
- retrieval: Hamming distance blocks by a GEMM on the device and the per-query distance
  histograms by ``bincount`` there; the tie-aware AP arithmetic is ``metrics/retrieval.py``'s.

Memory: each solver holds the packed codes on the device when they fit in ``max_bytes`` (else
they are streamed from the host array -- which may be a ``np.memmap`` -- chunk by chunk each
pass) plus one unpacked chunk and the (chunk x R K) distance block; the kernel form holds the
n x n Gram matrix. Passes: see docs/metrics.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from .bits import CHUNK_BYTES, iter_chunks, rows_per_chunk

BACKENDS = ("auto", "sklearn", "torch")


def resolve(backend: str, device: Any) -> str:
    """``auto`` -> torch on a CUDA device, sklearn otherwise; others unchanged (checked)."""
    if backend not in BACKENDS:
        raise ValueError(f"metrics.backend={backend!r}: allowed: {', '.join(BACKENDS)}")
    if backend != "auto":
        return backend
    return "torch" if device is not None and getattr(device, "type", str(device).split(":")[0]) == "cuda" else "sklearn"


def torch_device(device: Any):
    import torch
    return torch.device("cpu") if device is None else torch.device(device)


def _float(device) -> Any:
    """float64 on the CPU (scikit-learn's precision), float32 on accelerators."""
    import torch
    return torch.float64 if device.type == "cpu" else torch.float32


def as_tensor(a: np.ndarray, device=None):
    """A tensor on ``device`` from a numpy array, read-only ones (memory maps) included: they
    are only read, so torch's warning about non-writable arrays does not apply."""
    import warnings
    import torch
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        t = torch.from_numpy(np.ascontiguousarray(a))
    return t if device is None else t.to(device)


def unpack(packed_t, n_bits: int, dtype):
    """uint8 packed rows (tensor) -> (rows, n_bits) 0/1 in ``dtype`` on the same device."""
    import torch
    shifts = torch.arange(7, -1, -1, dtype=torch.uint8, device=packed_t.device)
    bits = (packed_t.unsqueeze(-1) >> shifts) & 1
    return bits.reshape(packed_t.shape[0], -1)[:, :n_bits].to(dtype)


class PackedRows:
    """Packed codes read chunk by chunk on ``device``: resident there when they fit in
    ``max_bytes``, else copied from the host array (possibly a memmap) per chunk."""

    def __init__(self, packed: np.ndarray, n_bits: int, device, max_bytes: int, extra_per_row: int = 0):
        import torch
        self.host, self.n_bits, self.device = packed, n_bits, device
        self.n = packed.shape[0]
        self.dtype = _float(device)
        item = torch.finfo(self.dtype).bits // 8
        resident = packed.nbytes <= max_bytes // 2
        self.on_device = as_tensor(packed, device) if resident else None
        budget = min(CHUNK_BYTES, max(1, max_bytes // 4))
        self.chunk = rows_per_chunk(max(1, n_bits) * (item + 1) + extra_per_row * item + packed.shape[1], budget)

    def rows(self, lo: int, hi: int):
        import torch
        if self.on_device is not None:
            return self.on_device[lo:hi]
        return as_tensor(self.host[lo:hi], self.device)

    def chunks(self) -> Iterator[tuple[int, int, Any]]:
        for lo, hi in iter_chunks(self.n, self.chunk):
            yield lo, hi, unpack(self.rows(lo, hi), self.n_bits, self.dtype)

    def take(self, idx: np.ndarray):
        import torch
        sub = np.ascontiguousarray(self.host[np.asarray(idx)])
        return unpack(as_tensor(sub, self.device), self.n_bits, self.dtype)


# ---------------------------------------------------------------- redundancy


_P = 2**31 - 1  # hash modulus: products and column sums stay below 2**63 in int64


def n_unique_rows(packed: np.ndarray, device=None, max_bytes: int | None = None, stream: bool | None = None) -> int:
    """Distinct packed rows, exactly. Resident (``torch.unique(dim=0)``) when the rows fit in
    half of ``max_bytes`` (None: always) or ``stream`` is False; otherwise (or when ``stream``
    is True; chunks then within an eighth of ``max_bytes``) streamed: two seeded hashes per row
    (sum_j (byte_j + 1) w_j mod 2**31 - 1) computed chunk by chunk on the device from the host
    array (a memory map allowed), distinct hash pairs counted there, and the rows of repeated
    hash pairs compared byte for byte (``families/redundancy.count_verified``)."""
    import torch
    n, width = packed.shape
    if n == 0:
        return 0
    if width == 0:
        return 1
    device = torch_device(device)
    if not stream if stream is not None else max_bytes is None or packed.nbytes <= max_bytes // 2:
        t = as_tensor(packed, device)
        return int(torch.unique(t, dim=0).shape[0])
    from .families.redundancy import count_verified
    budget = max(2**16, min(CHUNK_BYTES, (max_bytes or CHUNK_BYTES) // 8))
    cols = min(width, 2**20)
    weights = torch.as_tensor(np.random.default_rng(0).integers(1, _P, size=(2, width)), device=device)
    key = torch.empty(n, dtype=torch.int64, device=device)
    for lo, hi in iter_chunks(n, rows_per_chunk(cols * 8 * 2 + width, budget)):
        x = as_tensor(np.asarray(packed[lo:hi]), device)
        h = torch.zeros((2, hi - lo), dtype=torch.int64, device=device)
        for clo, chi in iter_chunks(width, cols):
            part = x[:, clo:chi].to(torch.int64) + 1
            for i in range(2):
                h[i] = (h[i] + (part * weights[i, clo:chi]).sum(1) % _P) % _P
        key[lo:hi] = h[0] * _P + h[1]          # < 2**62: one int64 per row
    _, inverse, counts = torch.unique(key, return_inverse=True, return_counts=True)
    del key
    return count_verified(packed, inverse.cpu().numpy(), counts.cpu().numpy(), budget)


def redundancy_ratio(packed: np.ndarray, device=None, max_bytes: int | None = None, stream: bool | None = None) -> float:
    n = packed.shape[0]
    if n == 0:
        raise ValueError("redundancy_ratio: got 0 codes; the ratio needs n >= 1")
    return (n - n_unique_rows(packed, device, max_bytes, stream)) / n


# ---------------------------------------------------------------- Gram matrix


def gram(packed: np.ndarray, n_bits: int, device, max_bytes: int = CHUNK_BYTES):
    """X X^T (float64 on the CPU, float32 elsewhere; exact integers below 2**24 bits) of packed
    codes, over column chunks unpacked on the device: one packed-bit product."""
    import torch
    n = packed.shape[0]
    dtype = _float(device)
    out = torch.zeros((n, n), dtype=dtype, device=device)
    cols = max(1, rows_per_chunk(max(n, 1) * 8 * 5, max(1, min(CHUNK_BYTES, max_bytes // 4))))
    for lo, hi in iter_chunks(packed.shape[1], cols):
        sub = as_tensor(packed[:, lo:hi], device)
        bits = unpack(sub, min(n_bits - 8 * lo, 8 * (hi - lo)), torch.float32)
        out += (bits @ bits.T).to(dtype)  # 0/1 products: exact in float32 below 2**24 per chunk
    return out


# ---------------------------------------------------------------- K-Means


class _Dense:
    """Lloyd on rows unpacked chunk by chunk; centers are (R K, bits) arrays."""

    def __init__(self, rows: PackedRows):
        import torch
        self.rows, self.n = rows, rows.n
        self.sq = torch.empty(self.n, dtype=rows.dtype, device=rows.device)
        col = torch.zeros(rows.n_bits, dtype=rows.dtype, device=rows.device)
        for lo, hi, x in rows.chunks():
            self.sq[lo:hi] = x.sum(1)  # |x|^2 = popcount for 0/1 rows
            col += x.sum(0)
        p = col / self.n
        self.mean_var = float((p * (1 - p)).mean()) if rows.n_bits else 0.0

    def point_dist(self, idx: np.ndarray):
        """(len(idx), n) squared distances of points ``idx`` to every row."""
        import torch
        pts = self.rows.take(idx)
        out = torch.empty((len(idx), self.n), dtype=pts.dtype, device=pts.device)
        psq = pts.sum(1)
        for lo, hi, x in self.rows.chunks():
            out[:, lo:hi] = (psq[:, None] + self.sq[None, lo:hi] - 2 * pts @ x.T).clamp_min_(0)
        return out

    def centers_at(self, idx: np.ndarray):
        return self.rows.take(idx.reshape(-1))

    def step(self, centers, r: int, k: int, update: bool, given=None):
        """labels (n, R) and their squared distances under ``centers``; with ``update`` also the
        new centers (means of those labels; an empty cluster keeps its center) and the squared
        shift per initialisation; with ``given`` (n, R) labels also the distances to those."""
        import torch
        n, dev, dt = self.n, centers.device, centers.dtype
        c_sq = (centers * centers).sum(1)
        labels = torch.empty((n, r), dtype=torch.int64, device=dev)
        mind = torch.empty((n, r), dtype=dt, device=dev)
        gd = torch.empty((n, r), dtype=dt, device=dev) if given is not None else None
        sums = torch.zeros_like(centers) if update else None
        offs = torch.arange(r, device=dev) * k
        for lo, hi, x in self.rows.chunks():
            dist = (c_sq[None, :] - 2 * (x @ centers.T)).view(hi - lo, r, k)
            md, lab = dist.min(2)
            labels[lo:hi], mind[lo:hi] = lab, md + self.sq[lo:hi, None]
            if given is not None:
                gd[lo:hi] = dist.gather(2, given[lo:hi, :, None])[..., 0] + self.sq[lo:hi, None]
            if update:
                onehot = torch.zeros((hi - lo, r * k), dtype=dt, device=dev)
                onehot.scatter_(1, lab + offs, 1.0)
                sums += onehot.T @ x
        out = {"labels": labels, "dist": mind.clamp_min_(0), "given": gd}
        if update:
            counts = torch.bincount((labels + offs).reshape(-1), minlength=r * k).to(dt)
            new = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], centers)
            out["centers"] = new
            out["shift"] = ((new - centers) ** 2).sum(1).view(r, k).sum(1)
        return out


class _Kernel:
    """Lloyd from the Gram matrix G = X X^T: a center is a weight row w over the rows (c = w X)."""

    def __init__(self, g):
        self.g, self.n = g, g.shape[0]
        self.sq = g.diagonal().clone()
        n = self.n
        self.mean_var_total = float(self.sq.sum() / n - g.sum() / n**2)  # sum over bits of p(1-p)

    def point_dist(self, idx: np.ndarray):
        import torch
        idx_t = torch.as_tensor(np.asarray(idx), device=self.g.device)
        return (self.sq[idx_t][:, None] + self.sq[None, :] - 2 * self.g[idx_t]).clamp_min_(0)

    def centers_at(self, idx: np.ndarray):
        import torch
        flat = torch.as_tensor(np.asarray(idx).reshape(-1), device=self.g.device)
        w = torch.zeros((flat.numel(), self.n), dtype=self.g.dtype, device=self.g.device)
        w[torch.arange(flat.numel(), device=self.g.device), flat] = 1.0
        return w

    def step(self, w, r: int, k: int, update: bool, given=None):
        import torch
        gw = self.g @ w.T                      # (n, R K): x_i . c
        c_sq = (gw * w.T).sum(0)               # |c|^2 = w G w^T
        dist = (c_sq[None, :] - 2 * gw).view(self.n, r, k)
        md, labels = dist.min(2)
        out = {"labels": labels, "dist": (md + self.sq[:, None]).clamp_min_(0), "given": None}
        if given is not None:
            out["given"] = (dist.gather(2, given[:, :, None])[..., 0] + self.sq[:, None]).clamp_min_(0)
        if update:
            offs = torch.arange(r, device=w.device) * k
            onehot = torch.zeros((self.n, r * k), dtype=w.dtype, device=w.device)
            onehot.scatter_(1, labels + offs, 1.0)
            counts = onehot.sum(0)
            new = torch.where(counts[:, None] > 0, onehot.T / counts.clamp_min(1)[:, None], w)
            delta = new - w
            out["centers"] = new
            out["shift"] = ((delta @ self.g) * delta).sum(1).view(r, k).sum(1)
        return out


def _kmeans_pp(space, n: int, k: int, r: int, rng: np.random.Generator) -> np.ndarray:
    """scikit-learn's greedy k-means++ for ``r`` initialisations at once: (r, k) row indices."""
    import torch
    trials = 2 + int(math.log(k))
    chosen = np.empty((r, k), dtype=np.int64)
    chosen[:, 0] = rng.integers(0, n, size=r)
    closest = space.point_dist(chosen[:, 0])                       # (r, n)
    for c in range(1, k):
        cum = torch.cumsum(closest, dim=1)
        pot = cum[:, -1].cpu().numpy()
        vals = rng.random((r, trials)) * pot[:, None]
        cand = torch.searchsorted(cum, torch.as_tensor(vals, dtype=cum.dtype, device=cum.device))
        cand = cand.clamp_(max=n - 1).cpu().numpy()                 # (r, trials)
        d = space.point_dist(cand.reshape(-1)).view(r, trials, n)
        d = torch.minimum(closest[:, None, :], d)
        best = d.sum(2).argmin(1)                                   # (r,)
        rows = torch.arange(r, device=d.device)
        closest = d[rows, best]
        chosen[:, c] = cand[np.arange(r), best.cpu().numpy()]
    return chosen


def kmeans_clusters(packed: np.ndarray, n_bits: int, n_clusters: int, *, seed: int = 9, n_init: int = 10,
                    max_iter: int = 300, tol: float = 1e-4, device=None, max_bytes: int = 2**30,
                    form: str = "auto") -> np.ndarray:
    """Cluster index of every packed code (module docstring). ``form``: auto | dense | kernel;
    auto = kernel when there are more bits than rows and the Gram matrix fits in ``max_bytes``."""
    import torch
    device = torch_device(device)
    n = packed.shape[0]
    k = min(n_clusters, n)
    if k <= 1 or n_bits == 0:
        return np.zeros(n, dtype=np.int64)
    item = torch.finfo(_float(device)).bits // 8
    if form == "auto":
        form = "kernel" if n < n_bits and 3 * n * n * item <= max_bytes else "dense"
    with torch.no_grad():
        if form == "kernel":
            return kmeans_gram(gram(packed, n_bits, device, max_bytes), n_bits, n_clusters, seed=seed,
                               n_init=n_init, max_iter=max_iter, tol=tol)
        space = _Dense(PackedRows(packed, n_bits, device, max_bytes, extra_per_row=4 * n_init * k))
        return _lloyd(space, n, k, n_init, tol * space.mean_var, seed, max_iter, device)


def kmeans_gram(g, n_bits: int, n_clusters: int, *, seed: int = 9, n_init: int = 10, max_iter: int = 300,
                tol: float = 1e-4) -> np.ndarray:
    """``kmeans_clusters`` in kernel form from the rows' Gram matrix ``g`` (a tensor, on the device
    where Lloyd runs) of codes with ``n_bits`` bits (the mean per-bit variance of the tolerance)."""
    import torch
    n = g.shape[0]
    k = min(n_clusters, n)
    if k <= 1 or n_bits == 0:
        return np.zeros(n, dtype=np.int64)
    with torch.no_grad():
        space = _Kernel(g)
        return _lloyd(space, n, k, n_init, tol * space.mean_var_total / n_bits, seed, max_iter, g.device)


def _lloyd(space, n: int, k: int, r: int, tol_abs: float, seed: int, max_iter: int, device) -> np.ndarray:
    """``r`` k-means++ initialisations advanced together in ``space`` (_Dense or _Kernel); the
    labels of the one of lowest inertia."""
    import torch
    rng = np.random.default_rng(seed)
    centers = space.centers_at(_kmeans_pp(space, n, k, r, rng))
    done = torch.zeros(r, dtype=torch.bool, device=device)
    strict = torch.zeros(r, dtype=torch.bool, device=device)
    labels_old = torch.full((n, r), -1, dtype=torch.int64, device=device)
    for _ in range(max_iter):
        res = space.step(centers, r, k, update=True)
        frozen = done.repeat_interleave(k)[:, None]
        centers = torch.where(frozen, centers, res["centers"])
        same = (res["labels"] == labels_old).all(0) & ~done
        strict |= same
        labels_old = torch.where(done[None, :], labels_old, res["labels"])
        done |= same | (res["shift"] <= tol_abs)
        if bool(done.all()):
            break
    final = space.step(centers, r, k, update=False, given=labels_old.clamp_min(0))
    labels = torch.where(strict[None, :], labels_old, final["labels"])
    dist = torch.where(strict[None, :], final["given"], final["dist"])
    inertia = dist.sum(0)
    best = int(torch.argmin(inertia))
    return labels[:, best].cpu().numpy().astype(np.int64)


# ---------------------------------------------------------------- logistic regression


def _lbfgs(params, closure_loss, max_iter: int) -> None:
    import torch
    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=max_iter, history_size=10,
                            tolerance_grad=1e-5, tolerance_change=1e-10, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = closure_loss()
        loss.backward()
        return loss

    opt.step(closure)


def logreg_predict(x_train, y_train: np.ndarray, x_test, *, mode: str = "ovo", C: float = 1.0,
                   max_iter: int = 300, gather_bytes: int = 2**28):
    """Predicted labels of ``x_test`` (tensors of features) by the estimators of the module
    docstring fitted on ``x_train``. A single training class predicts it everywhere. One-vs-one
    gathers each pair's rows once when that copy fits in ``gather_bytes``."""
    import torch
    classes, y = np.unique(y_train, return_inverse=True)
    n_cls = classes.size
    if n_cls == 1:
        return np.full(x_test.shape[0], classes[0])
    dev, dt = x_train.device, x_train.dtype
    yt = torch.as_tensor(y, device=dev)
    n, f = x_train.shape
    if mode == "multinomial":
        w = torch.zeros((n_cls, f), dtype=dt, device=dev, requires_grad=True)
        b = torch.zeros(n_cls, dtype=dt, device=dev, requires_grad=True)

        def loss():
            z = x_train @ w.T + b
            return (torch.nn.functional.cross_entropy(z, yt, reduction="sum") + 0.5 / C * (w * w).sum()) / n

        _lbfgs([w, b], loss, max_iter)
        with torch.no_grad():
            return classes[(x_test @ w.T + b).argmax(1).cpu().numpy()]
    if mode == "ovo":
        pi, pj = _pairs(n_cls, dev)
        mask = ((yt[:, None] == pi[None, :]) | (yt[:, None] == pj[None, :])).to(dt)   # (n, P)
        target = (yt[:, None] == pj[None, :]).to(dt)                                 # positive = j
    elif mode == "ovr":
        cls = torch.arange(n_cls, device=dev)
        mask = torch.ones((n, n_cls), dtype=dt, device=dev)
        target = (yt[:, None] == cls[None, :]).to(dt)
    else:
        raise ValueError(f"metrics.logreg_mode={mode!r}: allowed: ovo, ovr, multinomial")
    sign = 2 * target - 1
    rows = mask.sum(0)                                   # each problem scaled by its rows, as sklearn
    n_prob = mask.shape[1]
    w = torch.zeros((n_prob, f), dtype=dt, device=dev, requires_grad=True)
    b = torch.zeros(n_prob, dtype=dt, device=dev, requires_grad=True)

    size = int(rows.max())
    if mode == "ovo" and n_prob * size * f * x_train.element_size() <= gather_bytes:
        # each pair sees only its own rows (about 2n / K): gathered once, padded, one batched
        # product per evaluation -- about K / 2 times fewer operations than all rows per pair
        order = torch.argsort(mask.T, dim=1, descending=True, stable=True)[:, :size]      # (P, size)
        valid = torch.gather(mask.T, 1, order)
        xp = x_train[order]                                                           # (P, size, f)
        sp = torch.gather(sign.T, 1, order)

        def loss():
            z = torch.bmm(xp, w[:, :, None])[..., 0] + b[:, None]
            per = (valid * torch.nn.functional.softplus(-sp * z)).sum(1) + 0.5 / C * (w * w).sum(1)
            return (per / rows).sum()
    else:
        def loss():
            z = x_train @ w.T + b
            per = (mask * torch.nn.functional.softplus(-sign * z)).sum(0) + 0.5 / C * (w * w).sum(1)
            return (per / rows).sum()

    _lbfgs([w, b], loss, max_iter)
    with torch.no_grad():
        return classes[_decide(x_test @ w.T + b, mode, n_cls).cpu().numpy()]


def _pairs(n_cls: int, device):
    """The one-vs-one problems (i, j), i < j: class indices of each side (tensors)."""
    import torch
    pairs = [(i, j) for i in range(n_cls) for j in range(i + 1, n_cls)]
    return (torch.as_tensor([p[0] for p in pairs], device=device),
            torch.as_tensor([p[1] for p in pairs], device=device))


def _decide(dec, mode: str, n_cls: int):
    """Class index per row from the decision values (m, problems): argmax (ovr, multinomial) or
    scikit-learn's OneVsOneClassifier rule (votes plus normalized confidences)."""
    import torch
    if mode != "ovo":
        return dec.argmax(1)
    pi, pj = _pairs(n_cls, dec.device)
    pos = (dec > 0).to(dec.dtype)
    votes = torch.zeros((dec.shape[0], n_cls), dtype=dec.dtype, device=dec.device)
    conf = torch.zeros_like(votes)
    votes.index_add_(1, pi, 1 - pos)
    votes.index_add_(1, pj, pos)
    conf.index_add_(1, pi, -dec)
    conf.index_add_(1, pj, dec)
    return (votes + conf / (3 * (conf.abs() + 1))).argmax(1)


def logreg_predict_streamed(train: np.ndarray, y_train: np.ndarray, test: np.ndarray, n_bits: int, *,
                            mode: str = "ovo", C: float = 1.0, max_iter: int = 300, device=None,
                            max_bytes: int = 2**30) -> np.ndarray:
    """``logreg_predict`` on dense 0/1 features that are never held whole: every objective and
    gradient evaluation of the same L-BFGS streams the packed training codes chunk by chunk
    (unpacked on the device, float64, gradients accumulated chunk by chunk), so it is the same
    estimator as the in-memory path, at one pass over the training codes per evaluation; test
    codes are scored chunk by chunk. Memory: the weights (problems x bits, with L-BFGS's history
    of 10 pairs of that size) plus one chunk."""
    import torch
    device = torch_device(device)
    classes, y = np.unique(y_train, return_inverse=True)
    y = y.reshape(-1)
    n_cls, n = classes.size, train.shape[0]
    if n_cls == 1:
        return np.full(test.shape[0], classes[0])
    if mode not in ("ovo", "ovr", "multinomial"):
        raise ValueError(f"metrics.logreg_mode={mode!r}: allowed: ovo, ovr, multinomial")
    dt, f = torch.float64, max(n_bits, 1)
    yt = torch.as_tensor(y, device=device)
    n_prob = n_cls if mode != "ovo" else n_cls * (n_cls - 1) // 2
    weight_bytes = n_prob * f * 8 * 23                   # weights, gradient, 2 x 10 history vectors
    budget = max(max_bytes // 8, max_bytes - weight_bytes, 1)  # weights beyond the budget: chunks still sized
    rows = PackedRows(train, n_bits, device, budget)
    rows.dtype = dt  # float64 features, as the in-memory path; a chunk's bits, floats and (rows x problems) terms
    rows.chunk = rows_per_chunk(f * 9 + 8 * 4 * n_prob + train.shape[1], min(CHUNK_BYTES, max(1, budget // 4)))
    if mode == "ovo":
        pi, pj = _pairs(n_cls, device)
    counts = torch.bincount(yt, minlength=n_cls).to(dt)
    per_problem = counts[pi] + counts[pj] if mode == "ovo" else torch.full((n_cls,), float(n), dtype=dt, device=device)
    w = torch.zeros((n_prob, f), dtype=dt, device=device, requires_grad=True)
    b = torch.zeros(n_prob, dtype=dt, device=device, requires_grad=True)

    def feats(x):
        return x if n_bits else torch.zeros((x.shape[0], 1), dtype=dt, device=device)

    def data_term(x, yc):
        z = feats(x) @ w.T + b
        if mode == "multinomial":
            return torch.nn.functional.cross_entropy(z, yc, reduction="sum") / n
        if mode == "ovo":
            mask = ((yc[:, None] == pi[None, :]) | (yc[:, None] == pj[None, :])).to(dt)
            target = (yc[:, None] == pj[None, :]).to(dt)
        else:
            mask = torch.ones_like(z)
            target = (yc[:, None] == torch.arange(n_cls, device=device)[None, :]).to(dt)
        return ((mask * torch.nn.functional.softplus(-(2 * target - 1) * z)).sum(0) / per_problem).sum()

    def penalty():
        if mode == "multinomial":
            return 0.5 / C * (w * w).sum() / n
        return (0.5 / C * (w * w).sum(1) / per_problem).sum()

    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, history_size=10, tolerance_grad=1e-5,
                            tolerance_change=1e-10, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        total = penalty()
        total.backward()
        value = float(total.detach())
        for lo, hi, x in rows.chunks():
            part = data_term(x, yt[lo:hi])
            part.backward()
            value += float(part.detach())
        return torch.tensor(value, dtype=dt)

    opt.step(closure)
    out = np.empty(test.shape[0], dtype=np.int64)
    with torch.no_grad():
        for lo, hi in iter_chunks(test.shape[0], rows.chunk):
            x = unpack(as_tensor(np.asarray(test[lo:hi]), device), n_bits, dt)
            out[lo:hi] = _decide(feats(x) @ w.T + b, mode, n_cls).cpu().numpy()
    return classes[out]


def logreg_accuracy(train: np.ndarray, train_labels: np.ndarray, test: np.ndarray, test_labels: np.ndarray,
                    n_bits: int, *, mode: str = "ovo", device=None, max_bytes: int = 2**30) -> float:
    """Test accuracy of the torch logistic regression on packed codes: exact row-space
    coordinates when there are fewer rows than bits (n features instead of bits) and the Gram
    matrix fits in ``max_bytes``, else dense features when they fit, else the same L-BFGS
    streamed over the packed codes (``logreg_predict_streamed``)."""
    import torch
    from .families import logreg as sk
    device = torch_device(device)
    n = train.shape[0]
    dt = torch.float64
    if n < n_bits and 32 * n * n <= max_bytes:
        space, ftr = sk.row_space(train)
        xtr = torch.from_numpy(ftr).to(device)
        xte = torch.from_numpy(space.features(test)).to(device)
    elif n * max(n_bits, 1) * 8 * 3 <= max_bytes:
        def feats(p):
            return unpack(as_tensor(p, device), n_bits, dt) if n_bits else \
                torch.zeros((p.shape[0], 1), dtype=dt, device=device)
        xtr, xte = feats(train), feats(test)
    else:  # the same L-BFGS, each evaluation streamed over the packed codes
        pred = logreg_predict_streamed(train, train_labels, test, n_bits, mode=mode, device=device,
                                       max_bytes=max_bytes)
        return float(np.mean(pred == test_labels))
    pred = logreg_predict(xtr, train_labels, xte, mode=mode, gather_bytes=max(1, max_bytes // 4))
    return float(np.mean(pred == test_labels))


# ---------------------------------------------------------------- retrieval


def distance_histograms(query: np.ndarray, query_labels: np.ndarray, db: np.ndarray, db_labels: np.ndarray,
                        n_bits: int, *, device=None, block_bytes: int = 2**28, max_bytes: int | None = None):
    """As ``metrics.retrieval.distance_histograms`` (same yields), distances by GEMM on ``device``.

    Memory: per query chunk the (chunk, n_bits + 1) histograms and one (chunk, database block)
    distance block within ``block_bytes``. The database is unpacked on the device once when
    that fits in a quarter of ``max_bytes`` (None: always); otherwise it is read block by block
    from the host array (a memory map allowed; packed rows copied, unpacked on the device) for
    every query chunk: one pass over the database per query chunk. Query rows are read one
    chunk at a time. Same histograms either way (exact integer distances)."""
    import torch
    device = torch_device(device)
    n_d, n_db = n_bits + 1, db.shape[0]
    width = max(n_bits, 1)
    resident = max_bytes is None or n_db * width * 4 + db.nbytes <= max_bytes // 4
    dy = torch.as_tensor(np.asarray(db_labels), device=device)
    qy_all = torch.as_tensor(np.asarray(query_labels), device=device)
    # per query: two histograms (int64) and their flat-index temporaries; per pair of a block: the
    # float32 product, the int64 distance and flat index, the relevance mask
    chunk = rows_per_chunk(n_d * 32 + 5 * width, max(1, block_bytes // 2))
    db_block = n_db if resident else rows_per_chunk(width * 5, max(1, block_bytes // 4))
    chunk = min(chunk, rows_per_chunk(min(n_db, db_block) * 24, max(1, block_bytes // 2)))
    if resident:
        dbx_all = unpack(as_tensor(db, device), n_bits, torch.float32)
        db_sq_all = dbx_all.sum(1)

    def db_blocks():
        for lo, hi in iter_chunks(n_db, db_block):
            if resident:
                yield lo, hi, dbx_all[lo:hi], db_sq_all[lo:hi]
            else:
                x = unpack(as_tensor(db[lo:hi], device), n_bits, torch.float32)
                yield lo, hi, x, x.sum(1)

    for lo, hi in iter_chunks(query.shape[0], chunk):
        q = unpack(as_tensor(query[lo:hi], device), n_bits, torch.float32)
        q_sq = q.sum(1)
        offs = (torch.arange(hi - lo, device=device) * n_d)[:, None]
        tot = torch.zeros((hi - lo) * n_d, dtype=torch.int64, device=device)
        rel = torch.zeros_like(tot)
        for dlo, dhi, x, x_sq in db_blocks():
            dist = (q_sq[:, None] + x_sq[None, :] - 2 * (q @ x.T)).round().to(torch.int64)
            flat = dist + offs
            tot += torch.bincount(flat.reshape(-1), minlength=(hi - lo) * n_d)
            same = qy_all[lo:hi, None] == dy[None, dlo:dhi]
            rel += torch.bincount(flat[same], minlength=(hi - lo) * n_d)
        yield slice(lo, hi), rel.view(hi - lo, n_d).cpu().numpy(), tot.view(hi - lo, n_d).cpu().numpy()
