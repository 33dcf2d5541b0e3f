"""Pieces the PyTorch side of several benchmarks shares."""

from __future__ import annotations


def torch_train_step(forward, loss_of, params, opt, device: str, dtype: str):
    """A closure for one PyTorch optimiser step, waited for: ``forward()`` under bf16 autocast
    when dtype is "bfloat16", ``loss_of(output)`` outside it (fp32), then backward and step.
    Also returns the parameter count."""
    import torch

    def run():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=dtype == "bfloat16"):
            out = forward()
        loss_of(out).backward()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()

    return run, sum(p.numel() for p in params)
