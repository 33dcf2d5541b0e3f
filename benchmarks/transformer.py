"""Train step of the JAX FrameEncoder vs transformers' PyTorch HubertModel, printed as a ratio.

Both sides run the same work: waveform → HuBERT encoder (same config, batch, length,
no dropout) → linear head over K clusters → cross-entropy on the same span-masked
frames → backward → AdamW step. On a GPU it also prints model FLOPs utilisation from
the analytic FLOP count (and XLA's own count for comparison).

    python benchmarks/transformer.py                            # CPU-sized: small, 4 × 2 s
    python benchmarks/transformer.py --size base --batch 8 --seconds 5 --dtype bfloat16   # GPU
    python benchmarks/transformer.py --size base --batch 8 --seconds 5 --dtype float32
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from benchmarks.common import torch_train_step  # noqa: E402
from jaxdis.eval.report import print_benchmark  # noqa: E402
from jaxdis.masking import span_mask  # noqa: E402
from jaxdis.methods.transformer import MaskedPredictor  # noqa: E402
from jaxdis.models.transformer import FrameEncoderConfig, train_flops_per_frame  # noqa: E402

# Dense (no sparsity) peak FLOP/s per device kind, for MFU: (bf16 tensor cores, fp32 matmuls).
# The fp32 column is the TF32 tensor-core peak where XLA runs fp32 dots in TF32 by default
# (jax_default_matmul_precision "default" on Ampere and later GPUs); dividing by the plain
# FP32 (CUDA core) peak instead printed an MFU above 100 % on an H100.
PEAK = {  # substring of jax's device_kind → (bf16, fp32 as XLA runs it)
    "H100": (989e12, 494.7e12), "H200": (989e12, 494.7e12), "H800": (989e12, 494.7e12),
    "A100": (312e12, 156e12), "L4": (121e12, 60e12), "A10": (125e12, 62.5e12),
    "TPU v4": (275e12, 275e12), "TPU v5 lite": (197e12, 197e12), "TPU v5": (459e12, 459e12),
}


def peak_flops(dtype: str) -> tuple[float, str] | None:
    """(peak FLOP/s, which peak) for MFU: bf16 dense for bfloat16, TF32 dense for float32
    unless fp32 matmul precision was asked for ("highest" runs true fp32: no MFU then)."""
    kind = jax.devices()[0].device_kind
    for key, (bf16, fp32) in PEAK.items():
        if key in kind:
            if dtype == "bfloat16":
                return bf16, "bf16 dense"
            if str(jax.config.jax_default_matmul_precision or "default").lower() in ("highest", "float32"):
                return None
            return fp32, "TF32 dense" if "TPU" not in key else "bf16-pass dense"
    return None


def _time(fn, steps: int, warmup: int) -> float:
    """Median seconds per call after `warmup` calls (fn blocks until done)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def jax_step(cfg: FrameEncoderConfig, wav, span, labels, k: int, lr: float):
    model = MaskedPredictor(cfg, k)
    params = jax.jit(lambda key: model.init(key, wav, None, span, False))(jax.random.PRNGKey(0))["params"]
    tx = optax.adamw(lr, weight_decay=0.01)
    opt = tx.init(params)

    def loss_fn(p, wav, span, labels):
        logits, _, _ = model.apply({"params": p}, wav, None, span, train=False)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
        w = span.astype(jnp.float32)
        return jnp.sum(ce * w) / jnp.sum(w)

    def update(p, o, wav, span, labels):
        loss, g = jax.value_and_grad(loss_fn)(p, wav, span, labels)
        u, o = tx.update(g, o, p)
        return optax.apply_updates(p, u), o, loss

    step = jax.jit(update, donate_argnums=(0, 1))
    compiled = step.lower(params, opt, wav, span, labels).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    state = {"p": params, "o": opt}

    def run():
        state["p"], state["o"], loss = compiled(state["p"], state["o"], wav, span, labels)
        loss.block_until_ready()

    return run, (cost or {}).get("flops"), sum(x.size for x in jax.tree.leaves(params))


def torch_step(cfg: FrameEncoderConfig, wav, span, labels, k: int, lr: float, dtype: str, device: str, compile_: bool):
    import torch
    import transformers

    hf = transformers.HubertConfig(
        hidden_size=cfg.hidden, num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads,
        intermediate_size=cfg.mlp, conv_dim=cfg.conv_dim, conv_kernel=cfg.conv_kernel, conv_stride=cfg.conv_stride,
        conv_bias=cfg.conv_bias, feat_extract_norm=cfg.feat_norm, num_conv_pos_embeddings=cfg.pos_conv_kernel,
        num_conv_pos_embedding_groups=cfg.pos_conv_groups, do_stable_layer_norm=cfg.stable_layer_norm,
        hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, feat_proj_dropout=0.0, layerdrop=0.0,
        mask_time_prob=0.05)
    hf._attn_implementation = "sdpa"
    model = transformers.HubertModel(hf).to(device).train()
    head = torch.nn.Linear(cfg.hidden, k).to(device)
    params = list(model.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    x = torch.from_numpy(np.asarray(wav)).to(device)
    m = torch.from_numpy(np.asarray(span)).to(device)
    y = torch.from_numpy(np.asarray(labels)).long().to(device)
    fwd = torch.compile(model) if compile_ else model

    return torch_train_step(lambda: head(fwd(x, mask_time_indices=m).last_hidden_state),
                            lambda logits: torch.nn.functional.cross_entropy(logits.float()[m], y[m]), params, opt,
                            device, dtype)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="small", help="tiny | small | base | large")
    p.add_argument("--layers", type=int, help="override the preset's layer count")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seconds", type=float, default=2.0, help="audio per example (16 kHz)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--matmuls", default="xla", choices=["canonical", "xla"], help="FrameEncoderConfig.matmuls")
    p.add_argument("--clusters", type=int, default=504)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--torch-compile", action="store_true", help="also time torch.compile(model)")
    p.add_argument("--out", help="write the results as JSON here")
    args = p.parse_args(argv)

    over = {"layers": args.layers} if args.layers else {}
    cfg = FrameEncoderConfig.from_name(args.size, dropout=0.0, feat_dropout=0.0, dtype=args.dtype,
                                    matmuls=args.matmuls, **over)
    samples = int(args.seconds * 16000)
    frames = cfg.num_frames(samples)
    rng = np.random.default_rng(0)
    wav = rng.standard_normal((args.batch, samples)).astype(np.float32)
    span = np.asarray(span_mask(jax.random.PRNGKey(0), jnp.ones((args.batch, frames), bool)))
    labels = rng.integers(0, args.clusters, (args.batch, frames)).astype(np.int32)
    backend = jax.default_backend()
    res = {"device": jax.devices()[0].device_kind, "backend": backend, "size": args.size, "layers": cfg.layers,
           "batch": args.batch, "seconds": args.seconds, "frames": frames, "dtype": args.dtype,
           "canonical_matmuls": cfg.canonical}

    run, xla_flops, n_params = jax_step(cfg, jnp.asarray(wav), jnp.asarray(span), jnp.asarray(labels),
                                        args.clusters, 1e-4)
    res["params"] = n_params
    res["jax_step_s"] = _time(run, args.steps, args.warmup)
    flops = train_flops_per_frame(cfg, frames) * frames * args.batch
    res["model_tflop_per_step"] = flops / 1e12
    res["xla_tflop_per_step"] = xla_flops / 1e12 if xla_flops else None
    res["jax_tflops"] = flops / res["jax_step_s"] / 1e12
    peak = peak_flops(args.dtype) if backend != "cpu" else None
    if peak:
        peak, res["mfu_peak"] = peak
        res["peak_tflops"] = peak / 1e12
        res["jax_mfu"] = flops / res["jax_step_s"] / peak

    if not args.no_torch:
        try:
            import torch

            device = "cuda" if backend == "gpu" else "cpu"
            if device == "cuda" and not torch.cuda.is_available():
                raise RuntimeError("this torch has no CUDA: the ratio would compare different devices")
            if device == "cpu":
                torch.set_num_threads(os.cpu_count() or 1)
            trun, _ = torch_step(cfg, wav, span, labels, args.clusters, 1e-4, args.dtype, device, False)
            res["torch_step_s"] = _time(trun, args.steps, args.warmup)
            res["speedup_vs_torch"] = res["torch_step_s"] / res["jax_step_s"]
            if peak:
                res["torch_mfu"] = flops / res["torch_step_s"] / peak
            if args.torch_compile:
                crun, _ = torch_step(cfg, wav, span, labels, args.clusters, 1e-4, args.dtype, device, True)
                res["torch_compile_step_s"] = _time(crun, args.steps, args.warmup)
                res["speedup_vs_torch_compile"] = res["torch_compile_step_s"] / res["jax_step_s"]
        except Exception as e:  # no torch, no CUDA torch: JAX numbers only
            res["torch_error"] = f"{type(e).__name__}: {e}"

    line = f"{res['device']} {args.size}×{cfg.layers} B={args.batch} {args.seconds:g}s {args.dtype}: JAX {res['jax_step_s'] * 1e3:.1f} ms"
    if "torch_step_s" in res:
        line += f", PyTorch {res['torch_step_s'] * 1e3:.1f} ms → {res['speedup_vs_torch']:.2f}×"
    if "jax_mfu" in res:
        line += f", MFU {100 * res['jax_mfu']:.1f} % of the {res['mfu_peak']} peak"
    print_benchmark(res, line, args.out)
    return res


if __name__ == "__main__":
    main()
