"""Parity with a PyTorch TopK SAE written here (dense, the textbook way): same weights and
input → same latents, loss and gradients; and one Adam step with the unit-norm decoder."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdis.models.sae import TopKSAE, init_sae, sae_loss, unit_norm_decoder

torch = pytest.importorskip("torch")

D, L, K, K_AUX, B, WINDOW = 8, 32, 4, 4, 16, 100


def torch_topk_sae_loss(p, x, k, dead, k_aux, aux_coef=1 / 32):
    """Reference: dense latents, topk, AuxK on the detached residual without b_pre."""
    pre = (x - p["b_pre"]) @ p["W_enc"].T + p["b_enc"]                  # (B, L)
    vals, idx = pre.topk(k, dim=-1)
    z = torch.zeros_like(pre).scatter(1, idx, torch.relu(vals))          # (B, L)
    x_hat = z @ p["W_dec"] + p["b_pre"]
    fvu = ((x - x_hat) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()
    e = (x - x_hat).detach()
    top_aux, idx_aux = pre.masked_fill(~dead, float("-inf")).topk(k_aux, dim=-1)
    v_aux = torch.where(torch.isfinite(top_aux), torch.relu(top_aux), torch.zeros_like(top_aux))
    e_hat = torch.zeros_like(pre).scatter(1, idx_aux, v_aux) @ p["W_dec"]
    aux = ((e - e_hat) ** 2).sum() / (e ** 2).sum()
    return fvu + aux_coef * aux, z, fvu, aux


def _setup():
    model = TopKSAE(D, L, K, k_aux=K_AUX)
    x = jax.random.normal(jax.random.PRNGKey(0), (B, D)) + 0.3
    params = init_sae(model, jax.random.PRNGKey(1), x)
    # Train-like state: perturb so b_enc and b_pre matter, and mark 6 latents dead.
    params = {**params, "b_enc": 0.1 * jax.random.normal(jax.random.PRNGKey(2), (L,)),
              "W_enc": params["W_enc"] + 0.2 * jax.random.normal(jax.random.PRNGKey(3), (L, D))}
    since = jnp.zeros((L,), jnp.int32).at[jnp.array([1, 5, 9, 17, 20, 31])].set(10 * WINDOW)
    return model, x, params, since


def _grad_fn(model):
    return jax.jit(jax.grad(lambda p, x, since: sae_loss(model, p, x, K, since, WINDOW)[0]))


def _to_torch(tree):
    return {k: torch.tensor(np.asarray(v), requires_grad=True) for k, v in tree.items()}


@pytest.mark.torch
def test_latents_loss_and_gradients_match_pytorch():
    model, x, params, since = _setup()
    loss, metrics, _ = jax.jit(sae_loss, static_argnums=(0, 5))(model, params, x, K, since, WINDOW)
    grads = _grad_fn(model)(params, x, since)
    vals, idx, _ = jax.jit(lambda p: model.apply({"params": p}, x, K, method=TopKSAE.encode))(params)
    z = np.zeros((B, L), np.float32)
    np.put_along_axis(z, np.asarray(idx), np.asarray(vals), axis=1)

    tp = _to_torch(params)
    t_loss, t_z, t_fvu, t_aux = torch_topk_sae_loss(tp, torch.tensor(np.asarray(x)), K,
                                                    torch.tensor(np.asarray(since) > WINDOW), K_AUX)
    t_loss.backward()

    np.testing.assert_allclose(z, t_z.detach().numpy(), rtol=1e-5, atol=1e-6)
    assert t_aux.item() > 0.1  # AuxK is really exercised
    np.testing.assert_allclose(float(metrics["fvu"]), t_fvu.item(), rtol=1e-5)
    np.testing.assert_allclose(float(metrics["auxk"]), t_aux.item(), rtol=1e-5)
    np.testing.assert_allclose(float(loss), t_loss.item(), rtol=1e-5)
    for name in ("b_pre", "W_enc", "b_enc", "W_dec"):
        np.testing.assert_allclose(np.asarray(grads[name]), tp[name].grad.numpy(), rtol=1e-4, atol=1e-6,
                                   err_msg=name)


@pytest.mark.torch
def test_adam_step_with_unit_norm_decoder_matches_pytorch():
    model, x, params, since = _setup()
    tx = unit_norm_decoder(optax.adam(1e-2))
    state = tx.init(params)
    tp = _to_torch(params)
    opt = torch.optim.Adam(tp.values(), lr=1e-2)
    xt, dead = torch.tensor(np.asarray(x)), torch.tensor(np.asarray(since) > WINDOW)
    grad_fn, update = _grad_fn(model), jax.jit(tx.update)
    for _ in range(3):
        updates, state = update(grad_fn(params, x, since), state, params)
        params = optax.apply_updates(params, updates)

        opt.zero_grad()
        torch_topk_sae_loss(tp, xt, K, dead, K_AUX)[0].backward()
        with torch.no_grad():
            w = tp["W_dec"]
            w.grad -= (w.grad * w).sum(-1, keepdim=True) * w   # drop the part parallel to each row
            opt.step()
            w /= w.norm(dim=-1, keepdim=True)
    for name in ("b_pre", "W_enc", "b_enc", "W_dec"):
        np.testing.assert_allclose(np.asarray(params[name]), tp[name].detach().numpy(), rtol=1e-4, atol=2e-6,
                                   err_msg=name)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(params["W_dec"]), axis=-1), 1.0, atol=1e-6)
