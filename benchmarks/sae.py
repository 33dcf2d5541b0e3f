"""Train-step time of a TopK SAE: jaxdis (JAX) vs a PyTorch TopK SAE, as a ratio.

One step = encoder, TopK, decode, FVU, AuxK on the dead latents (k_aux = d/2, the
detached residual), backward, Adam, decoder gradient projection and renormalisation,
at d = 256, L = 8192, k = 32, batch 4096 by default. The JAX side is the real trainer
step (``jaxdis.train.step.make_update_fn`` on ``SAEMethod``, jitted); the PyTorch side is
written below in the two usual ways: sparse decode with ``F.embedding_bag`` (as
EleutherAI sparsify does on CPU) and dense decode through the (B, L) latent matrix (as
openai/sparse_autoencoder does). Both keep the same ``--dead`` latents dead every step so
both pay for AuxK (``--dead 0``: no dead latent; then both skip AuxK). The frameworks are
timed in alternating rounds; medians are compared, and the ratio is against the faster
PyTorch variant.

    python benchmarks/sae.py                               # d 256, L 8192, k 32, batch 4096
    python benchmarks/sae.py --dead 0 --steps 3 --repeats 3
    python benchmarks/sae.py --latents 1024 --batch 512 --steps 2 --repeats 1   # quick
    python benchmarks/sae.py --sparse-impl both            # jaxdis's scan and batched row ops side by side

Runs on JAX's and torch's default devices (a GPU when there is one).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # configs/, jaxdis/


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--d", type=int, default=256)
    p.add_argument("--latents", type=int, default=8192)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--dead", type=int, default=100, help="latents kept dead (AuxK active); 0: none")
    p.add_argument("--steps", type=int, default=5, help="timed steps per round")
    p.add_argument("--repeats", type=int, default=3, help="alternating JAX/PyTorch rounds")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--torch-decode", choices=["sparse", "dense", "both"], default="both")
    p.add_argument("--sparse-impl", choices=["auto", "scan", "batched", "both"], default="auto",
                   help="jaxdis's row gathers/scatters (configs/sae.py model.sparse_impl); both: time each")
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------------
# PyTorch reference (benchmark only)


def torch_sae(d: int, n_latents: int, k: int, k_aux: int, dead: int, decode: str, device):
    """A PyTorch TopK SAE train step (closure) with the same maths as jaxdis.models.sae."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    w = torch.randn(n_latents, d, generator=g)
    w /= w.norm(dim=-1, keepdim=True)
    p = {"b_pre": torch.zeros(d), "W_enc": w.clone(), "b_enc": torch.zeros(n_latents), "W_dec": w.clone()}
    p = {name: v.to(device).requires_grad_(True) for name, v in p.items()}
    opt = torch.optim.Adam(p.values(), lr=1e-3)
    dead_mask = torch.zeros(n_latents, dtype=torch.bool, device=device)
    dead_mask[:dead] = True

    def decode_rows(vals, idx, w_dec):
        if decode == "sparse":
            return F.embedding_bag(idx, w_dec, per_sample_weights=vals, mode="sum")
        z = torch.zeros(vals.shape[0], n_latents, device=device, dtype=vals.dtype).scatter(1, idx, vals)
        return z @ w_dec

    def step(x):
        pre = (x - p["b_pre"]) @ p["W_enc"].T + p["b_enc"]          # (B, L)
        vals, idx = pre.topk(k, dim=-1)
        x_hat = decode_rows(torch.relu(vals), idx, p["W_dec"]) + p["b_pre"]
        loss = ((x - x_hat) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()
        if dead:
            e = (x - x_hat).detach()
            top, idx_aux = pre.masked_fill(~dead_mask, float("-inf")).topk(k_aux, dim=-1)
            v_aux = torch.where(torch.isfinite(top), torch.relu(top), torch.zeros_like(top))
            e_hat = decode_rows(v_aux, idx_aux, p["W_dec"])
            loss = loss + ((e - e_hat) ** 2).sum() / (e ** 2).sum() / 32
        opt.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            wd = p["W_dec"]
            wd.grad -= (wd.grad * wd).sum(-1, keepdim=True) * wd
            opt.step()
            wd /= wd.norm(dim=-1, keepdim=True)
        return loss

    return step


# ---------------------------------------------------------------------------------------
# jaxdis


def jax_step(args, x, sparse_impl: str = "auto"):
    """The trainer's jitted update on SAEMethod, with `dead` latents kept dead each call."""
    import jax
    import jax.numpy as jnp

    from configs.sae import get_config
    from jaxdis.methods.sae import SAEMethod
    from jaxdis.train.step import init_state, make_update_fn
    from jaxdis.train.mesh import make_mesh

    c = get_config()
    c.model.n_latents, c.model.saes = args.latents, [(args.k, 0)]
    c.train.batch_size = args.batch
    c.model.sparse_impl = sparse_impl
    method = SAEMethod(c)
    method._x = x
    tx = method.optimizer(100)
    batch = {"x": jnp.asarray(x)}
    state = init_state(method, tx, make_mesh(1), 0, batch)
    since = state.model_state["since_fired"]
    since = {g: s.at[:, : args.dead].set(10 * c.model.dead_window) for g, s in since.items()}
    state = state.replace(model_state={**state.model_state, "since_fired": since})
    update = jax.jit(make_update_fn(method, tx))

    def step():
        return update(state, batch)

    return step


def main(argv=None):
    args = parse_args(argv)
    import jax
    import numpy as np
    import torch

    x = np.random.default_rng(0).standard_normal((args.batch, args.d)).astype(np.float32)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    xt = torch.tensor(x, device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    k_aux = args.d // 2

    impls = ["scan", "batched"] if args.sparse_impl == "both" else [args.sparse_impl]
    runners = {("jax" if len(impls) == 1 else f"jax_{i}"): jax_step(args, x, i) for i in impls}
    decodes = ["sparse", "dense"] if args.torch_decode == "both" else [args.torch_decode]
    torch_steps = {f"torch_{m}": torch_sae(args.d, args.latents, args.k, k_aux, args.dead, m, device)
                   for m in decodes}

    def run(name, n):
        if name in runners:
            out = None
            for _ in range(n):
                out = runners[name]()
            jax.block_until_ready(out)
        else:
            for _ in range(n):
                torch_steps[name](xt)
            sync()

    names = [*runners, *torch_steps]
    for name in names:
        run(name, args.warmup)
    times = {n: [] for n in names}
    for _ in range(args.repeats):
        for name in names:
            t = time.perf_counter()
            run(name, args.steps)
            times[name].append((time.perf_counter() - t) / args.steps)

    print(f"TopK SAE train step: d={args.d} L={args.latents} k={args.k} batch={args.batch} "
          f"dead={args.dead} (AuxK k_aux={k_aux}); jax {jax.devices()[0].platform}, torch {device} "
          f"({torch.get_num_threads()} threads)")
    med = {n: statistics.median(t) for n, t in times.items()}
    for name in names:
        print(f"  {name:13s} {1 / med[name]:8.3f} steps/s   ({med[name] * 1e3:8.1f} ms/step, median of {args.repeats})")
    best_torch = min(torch_steps, key=med.get)
    best_jax = min(runners, key=med.get)
    ratio = med[best_torch] / med[best_jax]
    print(f"ratio {best_jax} / {best_torch} (steps/s): {ratio:.2f}x")
    return {"ratio": ratio, **{f"{n}_steps_per_s": 1 / m for n, m in med.items()}}


if __name__ == "__main__":
    main()
