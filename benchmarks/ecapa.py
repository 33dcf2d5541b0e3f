"""Train step of the JAX ECAPA-TDNN vs speechbrain's PyTorch ECAPA_TDNN, printed as a ratio.

Both sides run the same work: 80-d features (B, T) with per-utterance lengths → ECAPA-TDNN
(same channels, kernels, dilations, Res2Net scale, SE and attention widths) in train mode
→ AAM-softmax over K speakers (margin 0.2, scale 30; speechbrain's Classifier,
AdditiveAngularMargin and LogSoftmaxWrapper on the PyTorch side) → backward → Adam step.
The two are timed in alternation, so a machine shared with other jobs slows both alike.

    python benchmarks/ecapa.py                                  # C = 512, 32 × 200 frames × 80
    python benchmarks/ecapa.py --channels 1024 --dtype bfloat16 # accelerator
    python benchmarks/ecapa.py --no-torch --steps 20
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import types

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from benchmarks.common import torch_train_step  # noqa: E402
from jaxdis.eval.report import print_benchmark  # noqa: E402
from jaxdis.losses import aam_softmax  # noqa: E402
from jaxdis.models.ecapa import Ecapa, EcapaConfig  # noqa: E402


def jax_step(cfg: EcapaConfig, x, mask, labels, k: int, lr: float, use_mask: bool):
    model = Ecapa(cfg)
    m = mask if use_mask else None
    variables = jax.jit(lambda key: model.init(key, x[:2], None if m is None else m[:2]))(jax.random.PRNGKey(0))
    params = {"encoder": variables["params"],
              "aam": jax.random.uniform(jax.random.PRNGKey(1), (k, cfg.embed_dim), minval=-0.1, maxval=0.1)}
    stats = variables["batch_stats"]
    tx = optax.adam(lr)
    opt = tx.init(params)

    def loss_fn(p, stats, x, mask, labels):
        (emb, _), upd = model.apply({"params": p["encoder"], "batch_stats": stats}, x, mask, train=True,
                                    mutable=["batch_stats"])
        loss, _ = aam_softmax(emb, p["aam"], labels, 0.2, 30.0)
        return loss, upd["batch_stats"]

    def update(p, o, stats, x, mask, labels):
        (loss, stats), g = jax.value_and_grad(loss_fn, has_aux=True)(p, stats, x, mask, labels)
        u, o = tx.update(g, o, p)
        return optax.apply_updates(p, u), o, stats, loss

    step = jax.jit(update, donate_argnums=(0, 1, 2))
    t0 = time.perf_counter()
    compiled = step.lower(params, opt, stats, x, m, labels).compile()
    compile_s = time.perf_counter() - t0
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    state = {"p": params, "o": opt, "s": stats}

    def run():
        state["p"], state["o"], state["s"], loss = compiled(state["p"], state["o"], state["s"], x, m, labels)
        loss.block_until_ready()

    return run, (cost or {}).get("flops"), sum(v.size for v in jax.tree.leaves(params)), compile_s


def speechbrain_classes():
    """speechbrain's ECAPA_TDNN, Classifier and AAM loss. speechbrain imports torchaudio at
    package import; the model needs none of it, so a stub stands in when it is absent."""
    if "torchaudio" not in sys.modules:
        try:
            import torchaudio  # noqa: F401
        except Exception:
            stub = types.ModuleType("torchaudio")
            stub.__version__ = "0.0"
            stub.list_audio_backends = lambda: []
            sys.modules["torchaudio"] = stub
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN, Classifier
    from speechbrain.nnet.losses import AdditiveAngularMargin, LogSoftmaxWrapper

    return ECAPA_TDNN, Classifier, AdditiveAngularMargin, LogSoftmaxWrapper


def torch_step(cfg: EcapaConfig, x, lengths, labels, k: int, lr: float, device: str, dtype: str):
    import torch

    ECAPA_TDNN, Classifier, AdditiveAngularMargin, LogSoftmaxWrapper = speechbrain_classes()
    model = ECAPA_TDNN(cfg.input_dim, lin_neurons=cfg.embed_dim, channels=list(cfg.channels),
                       kernel_sizes=list(cfg.kernel_sizes), dilations=list(cfg.dilations),
                       attention_channels=cfg.attention_channels, res2net_scale=cfg.res2net_scale,
                       se_channels=cfg.se_channels, global_context=cfg.global_context).to(device).train()
    head = Classifier(cfg.embed_dim, out_neurons=k).to(device)
    loss_fn = LogSoftmaxWrapper(AdditiveAngularMargin(margin=0.2, scale=30.0))
    params = list(model.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=lr)
    xt = torch.from_numpy(np.asarray(x)).to(device)
    lt = torch.from_numpy(np.asarray(lengths)).to(device)
    yt = torch.from_numpy(np.asarray(labels)).long()[:, None].to(device)

    return torch_train_step(lambda: head(model(xt, lt)), lambda out: loss_fn(out.float(), yt), params, opt,
                            device, dtype)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--channels", type=int, default=512, help="C; the aggregation layer has 3C")
    p.add_argument("--embed-dim", type=int, default=192)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--frames", type=int, default=200)
    p.add_argument("--speakers", type=int, default=1000, help="AAM-softmax classes")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--no-mask", action="store_true", help="JAX without a frame mask (speechbrain's lengths=None)")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--out", help="write the results as JSON here")
    args = p.parse_args(argv)

    c = args.channels
    cfg = EcapaConfig(channels=(c, c, c, c, 3 * c), embed_dim=args.embed_dim, dtype=args.dtype)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, args.frames, 80)).astype(np.float32)
    mask = np.ones((args.batch, args.frames), bool)
    labels = rng.integers(0, args.speakers, args.batch).astype(np.int32)
    backend = jax.default_backend()
    res = {"device": jax.devices()[0].device_kind, "backend": backend, "channels": c, "batch": args.batch,
           "frames": args.frames, "speakers": args.speakers, "dtype": args.dtype, "mask": not args.no_mask,
           "cpu_count": os.cpu_count()}

    jrun, flops, n_params, compile_s = jax_step(cfg, jnp.asarray(x), jnp.asarray(mask), jnp.asarray(labels),
                                               args.speakers, 1e-3, not args.no_mask)
    res.update(params=n_params, jax_compile_s=compile_s, xla_tflop_per_step=flops / 1e12 if flops else None)
    trun = None
    if not args.no_torch:
        try:
            import torch

            device = "cuda" if backend == "gpu" else "cpu"
            if device == "cuda" and not torch.cuda.is_available():
                raise RuntimeError("this torch has no CUDA: the ratio would compare different devices")
            if device == "cpu":
                torch.set_num_threads(os.cpu_count() or 1)
            trun, res["torch_params"] = torch_step(cfg, x, np.ones(args.batch, np.float32), labels, args.speakers,
                                                   1e-3, device, args.dtype)
        except Exception as e:  # no torch / speechbrain / CUDA torch: JAX numbers only
            res["torch_error"] = f"{type(e).__name__}: {e}"

    for _ in range(args.warmup):
        jrun()
        if trun:
            trun()
    jt, tt = [], []
    for _ in range(args.steps):          # alternate, so background load hits both sides alike
        t0 = time.perf_counter()
        jrun()
        jt.append(time.perf_counter() - t0)
        if trun:
            t0 = time.perf_counter()
            trun()
            tt.append(time.perf_counter() - t0)
    res["jax_step_s"] = float(np.median(jt))
    res["jax_step_s_all"] = [round(t, 4) for t in jt]
    if flops:
        res["jax_tflops"] = flops / res["jax_step_s"] / 1e12
    if tt:
        res["torch_step_s"] = float(np.median(tt))
        res["torch_step_s_all"] = [round(t, 4) for t in tt]
        res["speedup_vs_torch"] = res["torch_step_s"] / res["jax_step_s"]
        res["speedup_per_round"] = [round(b / a, 3) for a, b in zip(jt, tt)]

    line = (f"{res['device']} ECAPA C={c} B={args.batch}×{args.frames}×80 {args.dtype}: "
            f"JAX {res['jax_step_s'] * 1e3:.1f} ms")
    if "torch_step_s" in res:
        line += f", speechbrain PyTorch {res['torch_step_s'] * 1e3:.1f} ms → {res['speedup_vs_torch']:.2f}×"
    print_benchmark(res, line, args.out)
    return res


if __name__ == "__main__":
    main()
