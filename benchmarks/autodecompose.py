"""Train-step time of the large Autodecompose model: JAX/Flax (jaxdis) vs PyTorch.

One step = forward of both encoders and the decoder, MSE against the target, backward,
Adam update (lr 1e-3), BatchNorm statistics updated — on a fixed batch of 32 crops of
64 × 80 (the augmentations are not timed). The PyTorch model below is the same
architecture written with stock torch layers (Conv1d + BatchNorm1d + ReLU, nn.LSTM,
Linear); ``copy_weights`` loads the Flax parameters into it, and ``--check`` verifies that
both give the same loss before timing. Warm-up steps are excluded; the two frameworks are
timed in alternating order, `--repeats` times, and the medians are compared.

    python benchmarks/autodecompose.py                      # defaults: 20 steps × 5 repeats
    python benchmarks/autodecompose.py --threads 2 --steps 10 --repeats 3 --check

Runs on JAX's and torch's default devices (a GPU when there is one). ``--threads`` pins
the process to that many CPU cores before either library starts (both then use the same
cores) and sets torch's intra-op threads to match.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=20, help="timed steps per repeat")
    p.add_argument("--repeats", type=int, default=5, help="alternating JAX/torch timing rounds")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps before timing (each framework)")
    p.add_argument("--threads", type=int, default=0, help="CPU cores for both frameworks (0: all available)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--frames", type=int, default=64)
    p.add_argument("--unroll", type=int, default=1, help="LSTM scan unroll in JAX (same numbers, speed only)")
    p.add_argument("--lstm-impl", default="scan", choices=["scan", "rnn"],
                   help="JAX LSTM: lax.scan with a hand-written backward, or flax.linen.RNN (same numbers)")
    p.add_argument("--canonical-dots", default="auto", choices=["auto", "on", "off"],
                   help="JAX matmul backward with row-major transposed operands (auto: on for CPU)")
    p.add_argument("--tf32", action="store_true",
                   help="allow TF32 matmuls on GPU in both frameworks (default: exact float32 in both)")
    p.add_argument("--size", default="paper", choices=["paper", "tiny"])
    p.add_argument("--check", action="store_true", help="check both models give the same loss before timing")
    p.add_argument("--only", choices=["jax", "torch"], help="time one framework only")
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------------
# PyTorch reference implementation (benchmark only)
# ---------------------------------------------------------------------------------------

def torch_model(sizes: dict, variant: str = "large"):
    """The large Autodecompose model in PyTorch, same layers and widths as jaxdis'."""
    import torch
    from torch import nn

    class ConvBNR(nn.Module):
        def __init__(self, cin, cout, k):
            super().__init__()
            self.conv = nn.Conv1d(cin, cout, k, padding=k // 2)
            self.bn = nn.BatchNorm1d(cout, eps=1e-3, momentum=0.01)           # Keras momentum 0.99

        def forward(self, x):                                                  # (B, C, T)
            return torch.relu(self.bn(self.conv(x)))

    class Stack(nn.Module):
        """Conv blocks then a stacked LSTM then a linear head: (B, T, C) → (B, T, out)."""

        def __init__(self, cin, conv, conv_layers, lstm, lstm_layers, out, k):
            super().__init__()
            chans = [cin] + [conv] * conv_layers
            self.convs = nn.ModuleList(ConvBNR(a, b, k) for a, b in zip(chans[:-1], chans[1:]))
            self.lstm = nn.LSTM(chans[-1], lstm, num_layers=lstm_layers, batch_first=True)
            self.head = nn.Linear(lstm, out)

        def forward(self, x):
            x = x.transpose(1, 2)                                              # (B, C, T)
            for c in self.convs:
                x = c(x)
            x, _ = self.lstm(x.transpose(1, 2))                                # (B, T, H)
            return self.head(x)

    class Model(nn.Module):
        def __init__(self, s):
            super().__init__()
            enc = (s["n_mels"], s["enc_conv"], s["enc_conv_layers"], s["enc_lstm"], s["enc_lstm_layers"],
                   s["code"], s["kernel"])
            self.speaker = Stack(*enc)
            self.content = Stack(*enc)
            self.decoder = Stack(2 * s["code"], s["dec_conv"], s["dec_conv_layers"], s["dec_lstm"],
                                 s["dec_lstm_layers"], s["n_mels"], s["kernel"])

        def forward(self, xv, xc):
            return self.decoder(torch.cat([self.speaker(xv), self.content(xc)], dim=-1))

    assert variant == "large"
    return Model(sizes)


def copy_weights(tmodel, params, batch_stats):
    """Loads Flax parameters (a large AutodecomposeModel) into the torch model."""
    import numpy as np
    import torch

    def t(a):
        return torch.from_numpy(np.array(a, np.float32))

    def stack(tm, p, bs, head):
        convs = sorted(k for k in p if k.startswith("_ConvBNR_"))
        for tc, k in zip(tm.convs, convs):
            tc.conv.weight.data = t(p[k]["Conv_0"]["kernel"]).permute(2, 1, 0).contiguous()   # (out, in, k)
            tc.conv.bias.data = t(p[k]["Conv_0"]["bias"])
            tc.bn.weight.data = t(p[k]["BatchNorm_0"]["scale"])
            tc.bn.bias.data = t(p[k]["BatchNorm_0"]["bias"])
            tc.bn.running_mean.data = t(bs[k]["BatchNorm_0"]["mean"])
            tc.bn.running_var.data = t(bs[k]["BatchNorm_0"]["var"])
        lstms = sorted((k for k in p if k.startswith("LSTM_")), key=lambda k: int(k.split("_")[1]))
        for i, k in enumerate(lstms):
            getattr(tm.lstm, f"weight_ih_l{i}").data = t(p[k]["input"]["kernel"]).T.contiguous()
            getattr(tm.lstm, f"bias_ih_l{i}").data = t(p[k]["input"]["bias"])
            getattr(tm.lstm, f"weight_hh_l{i}").data = t(p[k]["recurrence"]["recurrent_kernel"]).T.contiguous()
            getattr(tm.lstm, f"bias_hh_l{i}").data.zero_()
        tm.head.weight.data = t(p[head]["kernel"]).T.contiguous()
        tm.head.bias.data = t(p[head]["bias"])

    stack(tmodel.speaker, params["speaker_encoder"], batch_stats["speaker_encoder"], "embed")
    stack(tmodel.content, params["content_encoder"], batch_stats["content_encoder"], "embed")
    stack(tmodel.decoder, params["decoder"], batch_stats["decoder"], "out")


# ---------------------------------------------------------------------------------------
# Steps
# ---------------------------------------------------------------------------------------

def jax_setup(args, data):
    import jax
    import numpy as np
    import jax.numpy as jnp
    import optax

    from jaxdis.models.autodecompose import make_model

    if not args.tf32:
        jax.config.update("jax_default_matmul_precision", "highest")
    canonical = {"auto": None, "on": True, "off": False}[args.canonical_dots]
    model = make_model("large", args.size, unroll=args.unroll, lstm_impl=args.lstm_impl, canonical_dots=canonical)
    xv, xc, target = (jnp.asarray(a) for a in data)
    variables = model.init(jax.random.key(0), xv, xc)
    params, batch_stats = variables["params"], variables["batch_stats"]
    tx = optax.adam(1e-3)
    opt_state = tx.init(params)

    def loss_fn(params, batch_stats, xv, xc, target):
        (recon, _), upd = model.apply({"params": params, "batch_stats": batch_stats}, xv, xc, train=True,
                                      mutable=["batch_stats"])
        return jnp.mean((recon - target) ** 2), upd["batch_stats"]

    def step(state, xv, xc, target):
        params, batch_stats, opt_state = state
        (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch_stats, xv, xc, target)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), batch_stats, opt_state), loss

    step = jax.jit(step, donate_argnums=0)
    # Host copies for --check: the device buffers are donated to the first step.
    params_np, stats_np = jax.tree.map(np.asarray, (params, batch_stats))
    box = {"state": (params, batch_stats, opt_state)}

    def run(n):
        loss = None
        for _ in range(n):
            box["state"], loss = step(box["state"], xv, xc, target)
        return float(jax.block_until_ready(loss))

    def eval_loss():
        recon, _ = model.apply({"params": params_np, "batch_stats": stats_np}, xv, xc, train=False)
        return np.asarray(recon)

    return run, (params_np, stats_np, eval_loss), jax.devices()[0]


def torch_setup(args, data, threads):
    import torch

    from jaxdis.models.autodecompose import PAPER_SIZES, TINY_SIZES

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        torch.set_num_threads(threads)
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.backends.cudnn.allow_tf32 = args.tf32
    torch.manual_seed(0)
    model = torch_model(PAPER_SIZES if args.size == "paper" else TINY_SIZES).to(device)
    xv, xc, target = (torch.from_numpy(a).to(device) for a in data)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def run(n):
        model.train()
        loss = None
        for _ in range(n):
            opt.zero_grad(set_to_none=True)
            loss = torch.mean((model(xv, xc) - target) ** 2)
            loss.backward()
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return float(loss.detach())

    def eval_loss(params, batch_stats):
        copy_weights(model, params, batch_stats)
        model.to(device).eval()
        with torch.no_grad():
            return model(xv, xc).cpu().numpy()

    return run, eval_loss, device


def main(argv=None):
    args = parse_args(argv)
    threads = args.threads or len(os.sched_getaffinity(0))
    if args.threads:
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:args.threads])
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

    import numpy as np

    rng = np.random.default_rng(0)
    shape = (args.batch, args.frames, 80)
    data = tuple(rng.random(shape, dtype=np.float32) for _ in range(3))       # voice view, content view, target

    runs, devices = {}, {}
    if args.only != "torch" or args.check:
        runs["jax"], (params, batch_stats, jax_eval), devices["jax"] = jax_setup(args, data)
    if args.only != "jax" or args.check:
        runs["torch"], torch_eval, devices["torch"] = torch_setup(args, data, threads)
    if args.check:
        rj, rt = jax_eval(), torch_eval(params, batch_stats)
        err = float(np.abs(rj - rt).max() / np.abs(rt).max())
        print(f"check: eval-mode reconstruction with identical weights, max |jax - torch| / max |torch| = "
              f"{err:.2e} (max |recon| {np.abs(rt).max():.3f})")
        if err > 1e-3:
            raise SystemExit("check failed: the two models differ")
        if args.only:
            runs = {args.only: runs[args.only]}
        # The torch model now holds the Flax weights; timing does not depend on values.

    print("devices: " + ", ".join(f"{k} {v}" for k, v in devices.items()) + f"; CPU threads {threads}; "
          f"batch {shape}; {args.steps} steps × {args.repeats} repeats; jax LSTM {args.lstm_impl}, unroll "
          f"{args.unroll}, canonical dots {args.canonical_dots}")
    for name, run in runs.items():                                             # compile + warm-up
        t0 = time.perf_counter()
        run(args.warmup)
        print(f"{name}: warm-up ({args.warmup} steps, incl. JAX compile) {time.perf_counter() - t0:.2f} s")

    # Wall time is what matters on an idle machine; process CPU time (all threads) is also
    # shown because it stays meaningful when other jobs share the cores.
    times = {k: [] for k in runs}
    cpu = {k: [] for k in runs}
    for r in range(args.repeats):
        order = list(runs) if r % 2 == 0 else list(runs)[::-1]
        for name in order:
            c0, t0 = time.process_time(), time.perf_counter()
            loss = runs[name](args.steps)
            times[name].append((time.perf_counter() - t0) / args.steps)
            cpu[name].append((time.process_time() - c0) / args.steps)
        print(f"repeat {r}: " + "  ".join(f"{k} {times[k][-1] * 1e3:.1f} ms/step (cpu {cpu[k][-1] * 1e3:.1f})"
                                          for k in runs) + f"  (last loss {loss:.5f})")

    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    for k, v in times.items():
        print(f"{k}: median {med[k] * 1e3:.1f} ms/step, min {min(v) * 1e3:.1f} ms/step, "
              f"median CPU time {med_cpu[k] * 1e3:.1f} ms/step")
    if len(med) == 2:
        print(f"ratio torch/jax (median wall step time): {med['torch'] / med['jax']:.2f}x; "
              f"CPU time: {med_cpu['torch'] / med_cpu['jax']:.2f}x")
    return med


if __name__ == "__main__":
    main()
