"""Generative use of autoencoders: likelihood estimates for variational models, and codes to decode.

Likelihoods need a model with a Gaussian encoder and the standard-normal prior of dimension `model.latent_dim`:

    model.posterior(x) -> (mu, logvar)   # (N, d) each; q(z|x) = N(mu, diag(exp(logvar))); x as given, (N, ...)
    model.decode_raw(z) -> raw           # the decoder's output before any output activation, for codes (N, d)
    model.log_px(x, raw) -> (N,)         # log p(x|z) in nats, summed over the pixels

`log_likelihood` is the importance-sampled estimate log (1/k) sum_i p(x|z_i) p(z_i) / q(z_i|x) with z_i ~ q(z|x):
a lower bound on log p(x) in expectation that tightens as k grows (k = 1 is the single-sample ELBO). `elbo` is
the bound with the KL term in closed form. Both run without gradients in eval mode (the previous mode comes back),
are seeded, and decode at most `max_decoded` images at once.

The sampling helpers give codes for the Generate page: prior samples and the prior-quantile manifold grid for a
VAE; a Gaussian fitted to a plain autoencoder's training codes, or a grid over its code range; interpolations.
Codes are float32 CPU tensors; `decode_images` turns any of them into pictures in [0, 1]: (n, 28, 28) for MNIST,
in general (n, S, S) grey or (n, 3, S, S) colour (`ModelConfig.image_shape`).
`sample_images`, `interpolation` and `code_box` put these together for the page, and `judge_images` hands any
pictures to the digit classifier (`aecore.labs.classifier`) for its verdict.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from aecore.labs import classifier
from aecore.engine.data import to_float
from aecore.engine.models import batched, inference
from aecore.engine.models.vae import gaussian_kl

MAX_DECODED = 50_000   # decoded images per chunk: 50k x 784 float32 is ~157 MB a tensor, a few such at the peak
MAX_BATCH = 500        # images per encoder call when the batch is chosen for the caller (conv activations grow fast)


def log_likelihood(model, images, k: int = 1000, batch: int | None = None, seed: int = 0,
                   max_decoded: int = MAX_DECODED) -> np.ndarray:
    """Importance-sampled log p(x) in nats per image, float64 (N,), from k samples of q(z|x) each.

    `images`: numpy or torch, (N, ...) as `model.posterior` takes them; uint8 is scaled by 1/255, floats are used
    as given. `batch` images share one encoder call and one draw of noise (default: as many as keep
    batch x k within `max_decoded`, at most MAX_BATCH); the decoder then sees at most `max_decoded` images at a
    time, which changes the memory used, not the result. The same seed and batch give the same numbers.
    """
    _check_positive(k=k, max_decoded=max_decoded)
    parts = []
    for mu, logvar, eps, log_px in _sampled(model, images, k, batch, seed, max_decoded):
        z = mu + (0.5 * logvar).exp() * eps                                   # (k, b, d), float64
        # log p(z) - log q(z|x): the log(2 pi) terms cancel, and (z - mu) / sigma is eps itself.
        log_ratio = -0.5 * (z.pow(2) - eps.pow(2) - logvar).sum(-1)          # (k, b)
        parts.append(torch.logsumexp(log_px + log_ratio, dim=0) - math.log(k))
    return torch.cat(parts).numpy() if parts else np.zeros(0)


def elbo(model, images, samples: int = 10, batch: int | None = None, seed: int = 0,
         max_decoded: int = MAX_DECODED) -> np.ndarray:
    """The evidence lower bound per image, float64 (N,): E_q[log p(x|z)] - KL(q(z|x) || p(z)).

    The KL term is exact (`gaussian_kl`); the reconstruction term is the mean over `samples` draws of z ~ q(z|x)
    (10 by default; 1 is the estimate a VAE trains on). Arguments as for `log_likelihood`.
    """
    _check_positive(samples=samples, max_decoded=max_decoded)
    parts = [log_px.mean(0) - gaussian_kl(mu, logvar)
             for mu, logvar, _, log_px in _sampled(model, images, samples, batch, seed, max_decoded)]
    return torch.cat(parts).numpy() if parts else np.zeros(0)


def _sampled(model, images, k: int, batch: int | None, seed: int, max_decoded: int):
    """Per batch of images: mu, logvar (b, d), the noise eps (k, b, d) and log p(x|z) (k, b), all float64 on CPU,
    where z = mu + exp(logvar / 2) * eps."""
    param = next(model.parameters())
    x_all = _as_input(images, param.dtype)
    batch = min(MAX_BATCH, max(1, max_decoded // k)) if batch is None else batch
    _check_positive(batch=batch)
    gen = torch.Generator(device=param.device).manual_seed(seed)
    with inference(model):
        for start in range(0, len(x_all), batch):
            x = x_all[start:start + batch].to(param.device)
            b = len(x)
            mu, logvar = model.posterior(x)
            if mu.ndim != 2 or mu.shape != logvar.shape or len(mu) != b:
                raise ValueError(f"model.posterior must return mu and logvar shaped (N, d) for N = {b} inputs, "
                                 f"got {tuple(mu.shape)} and {tuple(logvar.shape)}")
            # All k draws of the batch come first, so how the decoding is chunked cannot change them.
            eps = torch.randn((k, b, mu.shape[1]), generator=gen, device=param.device, dtype=mu.dtype)
            std = (0.5 * logvar).exp()
            per = max(1, max_decoded // b)                                   # samples decoded per chunk
            log_px = torch.cat([_log_px(model, x, mu + std * eps[s:s + per]) for s in range(0, k, per)])
            yield mu.double().cpu(), logvar.double().cpu(), eps.double().cpu(), log_px


def _log_px(model, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """log p(x|z) for codes z (s, b, d) of the b images x (b, ...): float64 (s, b) on CPU."""
    s, b, d = z.shape
    xs = x.unsqueeze(0).expand(s, *x.shape).reshape(s * b, *x.shape[1:])   # image j repeated for each sample
    out = model.log_px(xs, model.decode_raw(z.reshape(s * b, d)))
    if out.shape != (s * b,):
        raise ValueError(f"model.log_px must return one value per image, ({s * b},), got {tuple(out.shape)}")
    return out.double().cpu().view(s, b)


def prior_samples(model, n: int, seed: int = 0) -> torch.Tensor:
    """n codes drawn from the prior N(0, I) of dimension `model.latent_dim`: float32 (n, d) on the CPU."""
    _check_positive(n=n)
    return torch.randn((n, int(model.latent_dim)), generator=torch.Generator().manual_seed(seed))


def decode_images(model, codes, batch: int = 1000) -> np.ndarray:
    """Codes (n, ...) -> float32 pictures (n, *image_shape) in [0, 1] ((n, 28, 28) for MNIST), without gradients, in
    eval mode.

    Uses `model.decode(z)` (pixel space) when the model has it, otherwise the sigmoid of `model.decode_raw(z)`
    (a Bernoulli decoder's means). Flat codes (n, D) are reshaped to `model.config.code_shape` when that is not
    flat (a conv autoencoder's (C, 7, 7) code), so a Gaussian fitted to flattened codes can be decoded.
    """
    z = torch.as_tensor(np.asarray(codes) if not isinstance(codes, torch.Tensor) else codes)
    shape = getattr(getattr(model, "config", None), "code_shape", None)
    if shape is not None and len(shape) > 1 and z.ndim == 2:
        z = z.reshape(len(z), *shape)
    decode = getattr(model, "decode", None) or (lambda c: torch.sigmoid(model.decode_raw(c)))
    return batched(model, lambda c: decode(c).float().clamp(0, 1), z, batch).reshape(-1, *image_shape(model)).numpy()


def fit_gaussian(codes) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (D,) and covariance (D, D), float64, of codes (n, ...) flattened to (n, D); n - 1 in the denominator."""
    c = torch.as_tensor(np.asarray(codes) if not isinstance(codes, torch.Tensor) else codes)
    c = c.detach().cpu().double().reshape(len(c), -1)
    if len(c) < 2:
        raise ValueError(f"codes: need at least 2 codes to fit a covariance, got {len(c)}")
    return c.mean(0), torch.cov(c.T).reshape(c.shape[1], c.shape[1])


def gaussian_samples(mean, cov, n: int, seed: int = 0) -> torch.Tensor:
    """n draws from N(mean, cov): float32 (n, D) on the CPU. A singular cov is fine (dead code units have zero
    variance, where a Cholesky factor would fail): the square root comes from the eigendecomposition, as the
    symmetric root V·sqrt(Λ)·Vᵀ, which is one matrix whatever basis eigh picks where eigenvalues (nearly) repeat,
    so a seed gives the same draws on every CPU (V·sqrt(Λ) alone rotated them with the machine's LAPACK)."""
    _check_positive(n=n)
    mean = torch.as_tensor(np.asarray(mean, dtype=np.float64))
    cov = torch.as_tensor(np.asarray(cov, dtype=np.float64))
    if mean.ndim != 1 or cov.shape != (len(mean), len(mean)):
        raise ValueError(f"cov must be ({len(mean)}, {len(mean)}) for a mean of shape {tuple(mean.shape)}, "
                         f"got {tuple(cov.shape)}")
    values, vectors = torch.linalg.eigh(0.5 * (cov + cov.T))
    root = (vectors * values.clamp_min(0).sqrt()) @ vectors.T                # root @ root.T == cov, root symmetric
    eps = torch.randn((n, len(mean)), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return (mean + eps @ root.T).float()


def interpolate(z0, z1, steps: int = 10) -> torch.Tensor:
    """`steps` codes on the straight line from z0 to z1, both ends included: float32 (steps, *z0.shape)."""
    a, b, t = _ends(z0, z1, steps)
    return ((1 - t) * a + t * b).float()


def slerp(z0, z1, steps: int = 10) -> torch.Tensor:
    """`steps` codes along the great circle from z0 to z1 (the norm changes linearly), ends included: float32
    (steps, *z0.shape). Under a Gaussian prior the midpoints of a straight line have unusually small norms;
    slerp keeps them at typical ones. Falls back to the straight line for (anti)parallel codes."""
    a, b, t = _ends(z0, z1, steps)
    na, nb = a.norm(), b.norm()
    cos = (a.flatten() @ b.flatten() / (na * nb).clamp_min(1e-12)).clamp(-1, 1)
    omega = torch.arccos(cos)
    if na < 1e-12 or nb < 1e-12 or torch.sin(omega) < 1e-6:
        return interpolate(z0, z1, steps)
    ua, ub = a / na, b / nb
    direction = (torch.sin((1 - t) * omega) * ua + torch.sin(t * omega) * ub) / torch.sin(omega)
    return (((1 - t) * na + t * nb) * direction).float()


def _ends(z0, z1, steps: int):
    a = torch.as_tensor(np.asarray(z0) if not isinstance(z0, torch.Tensor) else z0).detach().cpu().double()
    b = torch.as_tensor(np.asarray(z1) if not isinstance(z1, torch.Tensor) else z1).detach().cpu().double()
    if a.shape != b.shape:
        raise ValueError(f"z1 must have the shape of z0, {tuple(a.shape)}, got {tuple(b.shape)}")
    if steps < 2:
        raise ValueError(f"steps must be at least 2 (both ends), got {steps}")
    t = torch.linspace(0, 1, steps, dtype=torch.float64).view(-1, *([1] * a.ndim))
    return a, b, t


def prior_grid(n: int = 15, low: float = 0.05, high: float = 0.95) -> torch.Tensor:
    """Codes (n * n, 2) at the standard normal's quantiles Phi^-1(linspace(low, high, n)), for a 2-D VAE.

    Order of the Keras VAE example's manifold figure: tile (row i, column j) of an n x n picture, drawn from the
    top-left, is code [q[j], q[i]] at index i * n + j. z[0] grows to the right; z[1] grows downwards (the top row
    has the smallest z[1]), as that figure shows it. `viz.grid(decode_images(model, codes), nrow=n)` draws it.
    """
    if not 0 < low < high < 1:
        raise ValueError(f"low and high must satisfy 0 < low < high < 1, got low={low}, high={high}")
    p = torch.linspace(low, high, _grid_side(n), dtype=torch.float64)
    q = torch.distributions.Normal(0.0, 1.0).icdf(p)
    return _grid(q, q)


def range_grid(low, high, n: int = 15) -> torch.Tensor:
    """Codes (n * n, 2) evenly spaced over [low, high] in each dimension, in `prior_grid`'s order, for a plain
    autoencoder with a 2-number code. `low` and `high` are numbers, or pairs (dimension 0, dimension 1)."""
    lo = np.broadcast_to(np.asarray(low, dtype=np.float64), (2,))
    hi = np.broadcast_to(np.asarray(high, dtype=np.float64), (2,))
    if not (lo < hi).all():
        raise ValueError(f"low must be below high in both dimensions, got low={low}, high={high}")
    side = _grid_side(n)
    return _grid(torch.linspace(lo[0], hi[0], side, dtype=torch.float64),
                 torch.linspace(lo[1], hi[1], side, dtype=torch.float64))


def encode_images(model, images, batch: int = MAX_BATCH) -> torch.Tensor:
    """Codes of images (N, 28, 28) or (N, 1, 28, 28) (any side S, or (N, 3, S, S) colour), uint8 or floats in [0, 1],
    flattened: float32 (N, D) on the
    CPU, in eval mode without gradients (a VAE's codes are its posterior means)."""
    x = _as_input(images, next(model.parameters()).dtype)
    if len(x) == 0:
        raise ValueError("images: no images to encode (got an empty batch)")
    return batched(model, lambda b: model.encode(b).flatten(1).float(), x, batch)


def code_gaussian(model, images) -> tuple[torch.Tensor, torch.Tensor]:
    """`fit_gaussian` of the codes of `images`: the naive generator of a plain autoencoder."""
    return fit_gaussian(encode_images(model, images))


def sample_images(model, n: int, seed: int = 0, gaussian=None) -> np.ndarray:
    """n pictures (n, *image_shape) in [0, 1] drawn from the model as a generator: decoded draws from N(mean, cov) when
    `gaussian` = (mean, cov) is given (`code_gaussian`), else from the prior N(0, I) of a variational model."""
    return decode_images(model, sample_codes(model, n, seed, gaussian))


def sample_codes(model, n: int, seed: int = 0, gaussian=None) -> torch.Tensor:
    """The n codes `sample_images` decodes (cheap: no decoding), so that a page can decode only those it shows."""
    if gaussian is not None:
        return gaussian_samples(*gaussian, n, seed=seed)
    if hasattr(model, "latent_dim"):
        return prior_samples(model, n, seed=seed)
    raise ValueError("gaussian: a plain autoencoder has no prior to sample; pass the Gaussian fitted to its "
                     "codes (code_gaussian)")


def interpolation(model, image_a, image_b, steps: int = 10, spherical: bool = False):
    """The codes of two images ((28, 28) for MNIST: the model's image_shape) joined by `steps` codes, straight or
    along the great circle (`slerp`), and decoded: (codes float32 (steps, D), pictures (steps, *image_shape)). The
    ends are the two images' reconstructions."""
    pair = [torch.as_tensor(np.asarray(image)).reshape(image_shape(model)) for image in (image_a, image_b)]
    ends = encode_images(model, torch.stack(pair))                            # (2, D)
    path = (slerp if spherical else interpolate)(ends[0], ends[1], steps)
    return path.numpy(), decode_images(model, path)


def code_box(config, codes=None, low: float = 0.01, high: float = 0.99) -> tuple[np.ndarray, np.ndarray]:
    """The rectangle (low (2,), high (2,)) a plain autoencoder's 2-number manifold grid covers: the code's range
    when it is bounded (`config.code_range`: tanh, sigmoid), else the `low` to `high` quantiles of `codes` (N, 2)
    in each dimension (by default the 1st to 99th percentile)."""
    if config.code_range is not None:
        return np.full(2, config.code_range[0], dtype=np.float64), np.full(2, config.code_range[1], dtype=np.float64)
    if codes is None or len(codes) < 2 or np.shape(codes)[1:] != (2,):
        raise ValueError(f"codes: an unbounded code needs at least 2 codes of 2 numbers to take its range from, "
                         f"got shape {None if codes is None else np.shape(codes)}")
    lo, hi = np.quantile(np.asarray(codes, dtype=np.float64), [low, high], axis=0)
    return lo, np.maximum(hi, lo + 1e-6)   # a dead unit (one value) still gets a grid


def judge_images(images, judge_model=None, confident: float = 0.9) -> dict:
    """`classifier.judge` of pictures (N, 28, 28) in [0, 1] by `judge_model`, by default the shipped digit
    classifier (its absence raises classifier.ClassifierFileError)."""
    judge_model = judge_model if judge_model is not None else classifier.digit_classifier()[0]
    return classifier.judge(classifier.predict_proba(judge_model, images), confident=confident)


def image_shape(model) -> tuple[int, ...]:
    """One picture of the model: its config's image_shape, MNIST's (28, 28) for a model without a config."""
    config = getattr(model, "config", None)
    return tuple(config.image_shape) if config is not None else (28, 28)


def _grid(xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    rows, cols = torch.meshgrid(ys, xs, indexing="ij")                       # (n, n): row i holds ys[i]
    return torch.stack([cols.flatten(), rows.flatten()], dim=1).float()


def _grid_side(n: int) -> int:
    if int(n) != n or n < 2:
        raise ValueError(f"n must be an integer of at least 2, got {n!r}")
    return int(n)


def _check_positive(**values) -> None:
    for name, v in values.items():
        if int(v) != v or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")


def _as_input(images, dtype: torch.dtype) -> torch.Tensor:
    """numpy or torch, (N, ...) -> a tensor of the model's dtype; uint8 becomes [0, 1] by dividing by 255."""
    x = images if isinstance(images, torch.Tensor) else torch.as_tensor(np.asarray(images))
    if x.ndim < 2:
        raise ValueError(f"images must be a batch (N, ...) with at least 2 dimensions, got {tuple(x.shape)}")
    return to_float(x, dtype, channel=False)
