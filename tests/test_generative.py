"""aecore.labs.generative: KL, likelihood estimates checked against a linear-Gaussian model's exact log p(x), and the
sampling helpers (prior samples, fitted Gaussians, grids, interpolation, decoding)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.distributions import MultivariateNormal, Normal, kl_divergence

from aecore.labs.generative import (decode_images, elbo, fit_gaussian, gaussian_kl, gaussian_samples, interpolate,
                               log_likelihood, prior_grid, prior_samples, range_grid, slerp)
from aecore.engine.models import ModelConfig, build

PHI_INV_005 = -1.6448536269514722   # the standard normal's 5 % quantile


# ---------------------------------------------------------------------------------------------------- KL
@pytest.mark.parametrize("mu, var", [([0.0, 0.0], [1.0, 1.0]), ([1.0, 2.0], [1.0, 1.0]), ([0.0], [4.0]),
                                     ([-0.5, 3.0, 0.1], [0.01, 2.5, 1.0])])
def test_kl_matches_closed_form(mu, var):
    # Per dimension: log(1 / s) + (s^2 + m^2) / 2 - 1 / 2, written out here in plain Python.
    expected = sum(math.log(1 / math.sqrt(v)) + (v + m * m) / 2 - 0.5 for m, v in zip(mu, var))
    mu_t, logvar = torch.tensor([mu], dtype=torch.float64), torch.tensor([var], dtype=torch.float64).log()
    kl = gaussian_kl(mu_t, logvar)
    assert kl.shape == (1,)
    assert kl.item() == pytest.approx(expected, abs=1e-12)
    torch_kl = kl_divergence(Normal(mu_t, logvar.mul(0.5).exp()), Normal(0.0, 1.0)).sum(-1)
    assert kl.item() == pytest.approx(torch_kl.item(), abs=1e-12)


def test_hand_picked_kl_values():
    kl = gaussian_kl(torch.tensor([[0.0, 0.0], [1.0, 2.0], [0.0, 0.0]]),
                     torch.tensor([[0.0, 0.0], [0.0, 0.0], [math.log(4.0), 0.0]]))
    np.testing.assert_allclose(kl.numpy(), [0.0, 2.5, 0.5 * (3 - math.log(4))], atol=1e-6)


def test_kl_matches_monte_carlo():
    mu, logvar = torch.tensor([0.5, -1.0, 0.2]), torch.tensor([math.log(0.5), math.log(2.0), 0.3])
    q = Normal(mu, logvar.mul(0.5).exp())
    z = mu + logvar.mul(0.5).exp() * torch.randn(100_000, 3, generator=torch.Generator().manual_seed(0))
    mc = (q.log_prob(z) - Normal(0.0, 1.0).log_prob(z)).sum(-1).mean()
    assert gaussian_kl(mu[None], logvar[None]).item() == pytest.approx(mc.item(), abs=0.02)


# --------------------------------------------------------------------------- the probabilistic-PCA oracle
SIGMA = 0.5


class LinearGaussian(nn.Module):
    """z ~ N(0, I_2), x = W z + b + noise, noise ~ N(0, SIGMA^2 I_5), with a diagonal Gaussian encoder.

    W's columns are orthogonal, so the exact posterior N(S W^T (x - b) / SIGMA^2, S), S = (I + W^T W / SIGMA^2)^-1,
    is diagonal and the encoder can be exact; `shift` moves its mean and `inflate` multiplies its variance.
    """
    latent_dim = 2

    def __init__(self, shift: float = 0.0, inflate: float = 1.0):
        super().__init__()
        q, _ = torch.linalg.qr(torch.randn(5, 2, generator=torch.Generator().manual_seed(1)))
        self.W = nn.Parameter(q * torch.tensor([2.0, 1.0]), requires_grad=False)           # (5, 2)
        self.b = nn.Parameter(torch.tensor([0.5, -1.0, 0.0, 2.0, 0.3]), requires_grad=False)
        self.shift, self.inflate = shift, inflate
        self.calls = []   # (training, grad enabled) at every posterior call

    def precision(self) -> torch.Tensor:
        return 1 + self.W.pow(2).sum(0) / SIGMA ** 2                                       # (2,)

    def posterior(self, x):
        self.calls.append((self.training, torch.is_grad_enabled()))
        mu = (x - self.b) @ self.W / SIGMA ** 2 / self.precision()
        logvar = (-self.precision().log() + math.log(self.inflate)).expand_as(mu)
        return mu + self.shift, logvar

    def decode_raw(self, z):
        return z @ self.W.T + self.b

    def log_px(self, x, raw):
        return Normal(raw, SIGMA).log_prob(x).sum(-1)

    def exact_log_px(self, x):
        w, b = self.W.double(), self.b.double()
        return MultivariateNormal(b, w @ w.T + SIGMA ** 2 * torch.eye(5, dtype=torch.float64)).log_prob(x.double())

    def exact_elbo(self, x):
        """E_q[log p(x|z)] - KL in closed form for the model's own (possibly wrong) encoder."""
        mu, logvar = (t.double() for t in self.posterior(x.float()))
        w, b = self.W.double(), self.b.double()
        recon = (Normal(mu @ w.T + b, SIGMA).log_prob(x.double()).sum(-1)
                 - 0.5 * (logvar.exp() * w.pow(2).sum(0)).sum(-1) / SIGMA ** 2)
        return recon - gaussian_kl(mu, logvar)

    def sample(self, n: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(2)
        return torch.randn(n, 2, generator=g) @ self.W.T + self.b + SIGMA * torch.randn(n, 5, generator=g)


@pytest.fixture(scope="module")
def points():
    return LinearGaussian().sample(20)                                                     # (20, 5)


def test_exact_posterior_makes_even_one_sample_exact(points):
    model = LinearGaussian()
    exact = model.exact_log_px(points).numpy()
    for k in (1, 7):
        est = log_likelihood(model, points, k=k, seed=3)
        assert est.shape == (20,) and est.dtype == np.float64
        np.testing.assert_allclose(est, exact, atol=1e-5)


def test_importance_sampling_converges_with_a_wrong_posterior(points):
    model = LinearGaussian(shift=0.3, inflate=2.0)
    exact = model.exact_log_px(points).numpy()
    err = log_likelihood(model, points, k=20_000, seed=0) - exact
    assert np.abs(err).mean() < 0.05
    assert np.abs(err).max() < 0.1
    # The wrong encoder leaves a real gap for k = 1 (about a nat), so the test above is not trivially met.
    assert (exact - model.exact_elbo(points).numpy()).mean() > 0.5


def test_bound_tightens_with_k_and_elbo_stays_below(points):
    model = LinearGaussian(shift=0.3, inflate=2.0)
    exact = model.exact_log_px(points).numpy().mean()
    means = [log_likelihood(model, points, k=k, seed=1).mean() for k in (1, 10, 1000)]
    assert means[0] < means[1] < means[2] < exact + 0.02
    assert elbo(model, points, seed=1).mean() <= means[2]


def test_elbo_matches_its_closed_form(points):
    model = LinearGaussian(shift=0.3, inflate=2.0)
    exact = model.exact_elbo(points).numpy()
    est = elbo(model, points, samples=50_000, seed=0)
    assert est.shape == (20,)
    assert np.abs(est - exact).max() < 0.05
    assert (exact < model.exact_log_px(points).numpy()).all()


def test_chunking_changes_memory_not_result(points):
    model = LinearGaussian(shift=0.3, inflate=2.0)
    whole = log_likelihood(model, points, k=500, batch=8, seed=4)
    chunked = log_likelihood(model, points, k=500, batch=8, seed=4, max_decoded=37)
    np.testing.assert_allclose(chunked, whole, atol=1e-5)
    again = log_likelihood(model, points, k=500, batch=8, seed=4)
    np.testing.assert_array_equal(again, whole)
    assert not np.allclose(log_likelihood(model, points, k=500, batch=8, seed=5), whole, atol=1e-5)
    np.testing.assert_allclose(elbo(model, points, batch=3, seed=4, max_decoded=7),
                               elbo(model, points, batch=3, seed=4), atol=1e-5)


def test_eval_mode_no_grad_and_mode_restored(points):
    model = LinearGaussian().train()
    log_likelihood(model, points, k=3)
    elbo(model, points)
    assert model.training
    assert model.calls and all(c == (False, False) for c in model.calls)


def test_inputs_uint8_numpy_and_empty():
    model = LinearGaussian()
    raw = np.random.default_rng(0).integers(0, 256, (6, 5), dtype=np.uint8)
    from_uint8 = log_likelihood(model, raw, k=4)
    np.testing.assert_allclose(from_uint8, log_likelihood(model, torch.from_numpy(raw).float() / 255, k=4),
                               rtol=1e-6)
    np.testing.assert_allclose(from_uint8, model.exact_log_px(torch.from_numpy(raw).double() / 255), atol=2e-4)
    assert log_likelihood(model, np.zeros((0, 5), np.float32)).shape == (0,)
    for bad in ({"k": 0}, {"batch": 0}, {"max_decoded": -1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            log_likelihood(model, raw, **bad)
    with pytest.raises(ValueError, match="images"):
        log_likelihood(model, np.zeros(5, np.float32))


# ------------------------------------------------------------------------------------------ sampling helpers
def test_prior_samples_shape_seed_and_moments():
    z = prior_samples(LinearGaussian(), 20_000, seed=0)
    assert z.shape == (20_000, 2) and z.dtype == torch.float32
    assert torch.equal(z, prior_samples(LinearGaussian(), 20_000, seed=0))
    assert not torch.equal(z[:10], prior_samples(LinearGaussian(), 10, seed=1))
    assert z.mean(0).abs().max() < 0.03 and (z.std(0) - 1).abs().max() < 0.03


def test_fit_gaussian_recovers_mean_and_covariance():
    mean = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    cov = torch.tensor([[2.0, 0.6, 0.0], [0.6, 1.0, -0.3], [0.0, -0.3, 0.5]], dtype=torch.float64)
    torch.manual_seed(0)
    draws = MultivariateNormal(mean, cov).sample((50_000,))
    m, c = fit_gaussian(draws.numpy())
    assert m.shape == (3,) and c.shape == (3, 3)
    assert (m - mean).abs().max() < 0.03 and (c - cov).abs().max() < 0.05
    # And gaussian_samples draws from the Gaussian it is given.
    ours = gaussian_samples(mean, cov, 50_000, seed=0)
    assert ours.shape == (50_000, 3) and torch.equal(ours, gaussian_samples(mean, cov, 50_000, seed=0))
    m2, c2 = fit_gaussian(ours)
    assert (m2 - mean).abs().max() < 0.03 and (c2 - cov).abs().max() < 0.05


def test_gaussian_samples_with_a_dead_unit():
    # A code unit that is always 0 gives a singular covariance (no Cholesky factor); samples keep it at 0.
    codes = torch.randn(500, 3, generator=torch.Generator().manual_seed(0)) * torch.tensor([1.0, 0.0, 2.0])
    mean, cov = fit_gaussian(codes)
    z = gaussian_samples(mean, cov, 1000, seed=0)
    assert z[:, 1].abs().max() < 1e-6 and abs(z[:, 2].std().item() / codes[:, 2].std().item() - 1) < 0.1
    with pytest.raises(ValueError, match="codes"):
        fit_gaussian(codes[:1])
    with pytest.raises(ValueError, match="cov"):
        gaussian_samples(mean, cov[:2], 5)


def test_gaussian_samples_do_not_turn_with_a_nearly_repeated_eigenvalue():
    """Two units of (almost) equal variance: a change of 1e-12 in the covariance turns eigh's eigenvectors by
    45 degrees, and the seed's draws must not turn with them (they did with the root V·sqrt(Λ); a machine's LAPACK
    was enough to turn them)."""
    cov = torch.diag(torch.tensor([1.0, 1.0 + 1e-13, 4.0], dtype=torch.float64))
    nudged = cov.clone()
    nudged[0, 1] = nudged[1, 0] = 1e-12
    assert torch.linalg.eigh(cov)[1][:2, :2].abs().min() < 0.1 < torch.linalg.eigh(nudged)[1][:2, :2].abs().min()
    a, b = gaussian_samples(torch.zeros(3), cov, 200, seed=5), gaussian_samples(torch.zeros(3), nudged, 200, seed=5)
    assert (a - b).abs().max() < 1e-5
    eps = torch.randn((200, 3), generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    assert torch.allclose(a, (eps @ torch.diag(torch.tensor([1.0, 1.0, 2.0], dtype=torch.float64))).float())


def test_prior_grid_values_and_keras_order():
    codes = prior_grid()
    assert codes.shape == (225, 2)
    q = Normal(0.0, 1.0).icdf(torch.linspace(0.05, 0.95, 15, dtype=torch.float64))
    assert q[0].item() == pytest.approx(PHI_INV_005, abs=1e-9)
    # The figure's loops: row i takes yi = q[i], column j takes xi = q[j], and the code is [xi, yi].
    keras = torch.tensor([[xi, yi] for yi in q.tolist() for xi in q.tolist()], dtype=torch.float32)
    assert torch.equal(codes, keras)
    np.testing.assert_allclose(codes[0], [PHI_INV_005, PHI_INV_005], atol=1e-6)       # top left
    np.testing.assert_allclose(codes[14], [-PHI_INV_005, PHI_INV_005], atol=1e-6)     # top right: z[0] grew
    np.testing.assert_allclose(codes[15, 1], q[1], atol=1e-6)                          # row 1: z[1] grew
    np.testing.assert_allclose(codes[112], [0.0, 0.0], atol=1e-6)                      # the centre tile
    assert prior_grid(4, 0.1, 0.9).shape == (16, 2)
    with pytest.raises(ValueError, match="low"):
        prior_grid(5, 0.0, 0.9)
    with pytest.raises(ValueError, match="n must"):
        prior_grid(1)


def test_range_grid():
    codes = range_grid((-2.0, 0.0), (2.0, 1.0), 5)
    assert codes.shape == (25, 2)
    np.testing.assert_allclose(codes[[0, 4, 5, 24]], [[-2, 0], [2, 0], [-2, 0.25], [2, 1]])
    assert torch.equal(range_grid(0.0, 1.0, 3)[:3, 0], torch.tensor([0.0, 0.5, 1.0]))
    with pytest.raises(ValueError, match="low"):
        range_grid(1.0, 0.0, 3)


def test_interpolate_and_slerp():
    z0, z1 = torch.tensor([1.0, 0.0, 2.0]), torch.tensor([-1.0, 4.0, 0.0])
    line = interpolate(z0, z1, 5)
    assert line.shape == (5, 3)
    assert torch.equal(line[0], z0) and torch.equal(line[-1], z1)
    np.testing.assert_allclose(line[2], [0.0, 2.0, 1.0], atol=1e-6)
    a, b = torch.tensor([3.0, 0.0]), torch.tensor([0.0, 3.0])
    arc = slerp(a, b, 7)
    np.testing.assert_allclose(arc[[0, -1]], torch.stack([a, b]), atol=1e-6)
    np.testing.assert_allclose(arc.norm(dim=1), 3.0, atol=1e-5)                        # stays on the circle
    np.testing.assert_allclose(arc[3], [3 / math.sqrt(2)] * 2, atol=1e-5)
    np.testing.assert_allclose(slerp(a, 2 * a, 3), interpolate(a, 2 * a, 3))           # parallel: a line
    with pytest.raises(ValueError, match="steps"):
        interpolate(z0, z1, 1)
    with pytest.raises(ValueError, match="z1"):
        slerp(z0, a, 3)


class SigmoidDecoder(nn.Module):
    """Only decode_raw: decode_images must apply the sigmoid itself."""
    latent_dim = 2

    def __init__(self):
        super().__init__()
        self.net = nn.Linear(2, 784)

    def decode_raw(self, z):
        return self.net(z).view(len(z), 1, 28, 28)


def test_decode_images():
    torch.manual_seed(0)
    codes = prior_samples(SigmoidDecoder(), 7, seed=0)
    toy = SigmoidDecoder().train()
    pics = decode_images(toy, codes.numpy(), batch=3)
    assert pics.shape == (7, 28, 28) and pics.dtype == np.float32 and toy.training
    with torch.no_grad():
        np.testing.assert_allclose(pics, torch.sigmoid(toy.net(codes)).view(7, 28, 28).numpy(), atol=1e-6)
    ae = build(ModelConfig(hidden=(2,), output="identity", loss="mse"), seed=0)
    with torch.no_grad():
        ae.decoder[-1].bias.add_(0.8)                       # push outputs past 1: decode_images must clamp
        expected = ae.decode(codes).clamp(0, 1).view(7, 28, 28).numpy()
    np.testing.assert_allclose(decode_images(ae, codes), expected, atol=1e-6)
    assert expected.max() == 1.0
    conv = build(ModelConfig(family="conv", channels=(4, 2), loss="mse"), seed=0)
    flat = gaussian_samples(torch.zeros(98), torch.eye(98), 4, seed=0)                # (4, 2 * 7 * 7) codes
    with torch.no_grad():
        expected = conv.eval().decode(flat.view(4, 2, 7, 7)).view(4, 28, 28).numpy()
    np.testing.assert_allclose(decode_images(conv, flat), expected, atol=1e-6)
