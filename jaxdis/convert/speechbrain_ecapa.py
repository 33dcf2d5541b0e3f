"""speechbrain ECAPA_TDNN state dict (``embedding_model.ckpt``) → jaxdis Ecapa variables.

    cfg, params, batch_stats = load_speechbrain_ecapa("pretrained/embedding_model.ckpt")
    emb, frames = Ecapa(cfg).apply({"params": params, "batch_stats": batch_stats}, fbank, mask)

The file is read with ``torch.load(weights_only=True)`` (tensors only, never arbitrary
pickle) or, for ``.safetensors``, with safetensors' numpy reader. The architecture
(widths, kernels, Res2Net scale, SE and attention widths, embedding size, global context)
is read off the tensor shapes; dilations are not stored and default to speechbrain's
(1, 2, 3, 4, 1). Inputs must be prepared as speechbrain does for that checkpoint (its
Fbank front end and sentence mean normalisation); jaxdis's ``fbank`` features are a
close but not identical front end.

Name mapping: the Flax tree uses speechbrain's module names with ``blocks.N`` written
``blocks_N``; each Conv1d holds its torch layer as ``.conv`` and each BatchNorm1d as
``.norm``. Conv weights (out, in, k) become kernels (k, in, out).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxdis.models.ecapa import Ecapa, EcapaConfig

PyTree = Any


def load_state_dict(path: str) -> dict[str, np.ndarray]:
    """Tensors of a speechbrain checkpoint as float32 numpy arrays (weights only)."""
    if path.endswith(".safetensors"):
        from safetensors.numpy import load_file

        sd = load_file(path)
    else:
        import torch

        sd = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(sd, Mapping):
            raise ValueError(f"{path}: expected a state dict, got {type(sd).__name__}")
        sd = {k: v.detach().cpu().numpy() for k, v in sd.items() if hasattr(v, "detach")}
    sd = {re.sub(r"^module\.", "", k): np.asarray(v) for k, v in sd.items()}
    return sd


def config_from_state_dict(sd: Mapping[str, np.ndarray], **overrides) -> EcapaConfig:
    """The EcapaConfig a state dict was built with (dilations: speechbrain's defaults)."""
    n_se = len({m.group(1) for k in sd if (m := re.match(r"blocks\.(\d+)\.tdnn1\.", k))})
    if n_se == 0 or "blocks.0.conv.conv.weight" not in sd:
        raise ValueError("not a speechbrain ECAPA_TDNN state dict (no blocks.0 TDNN / SE-Res2Net blocks)")
    w0 = sd["blocks.0.conv.conv.weight"]                                       # (C0, F, k0)
    channels = [w0.shape[0]] + [sd[f"blocks.{i}.tdnn1.conv.conv.weight"].shape[0] for i in range(1, n_se + 1)]
    kernels = [w0.shape[2]] + [sd[f"blocks.{i}.res2net_block.blocks.0.conv.conv.weight"].shape[2]
                               for i in range(1, n_se + 1)]
    mfa = sd["mfa.conv.conv.weight"]
    channels.append(mfa.shape[0])
    kernels.append(mfa.shape[2])
    scale = 1 + len({k.split(".")[4] for k in sd if k.startswith("blocks.1.res2net_block.blocks.")})
    att = sd["asp.tdnn.conv.conv.weight"]                                      # (A, 3C or C, 1)
    fields = dict(
        input_dim=int(w0.shape[1]), channels=tuple(int(c) for c in channels),
        kernel_sizes=tuple(int(k) for k in kernels),
        dilations=(1, 2, 3, 4, 1) if n_se == 3 else (1,) + tuple(range(2, n_se + 2)) + (1,),
        attention_channels=int(att.shape[0]), res2net_scale=int(scale),
        se_channels=int(sd["blocks.1.se_block.conv1.conv.weight"].shape[0]),
        global_context=bool(att.shape[1] == 3 * mfa.shape[0]),
        embed_dim=int(sd["fc.conv.weight"].shape[0]), padding_mode="reflect")
    fields.update(overrides)
    return EcapaConfig(**fields)


def torch_key(path: tuple[str, ...]) -> str:
    """speechbrain key of a Flax leaf: ('blocks_1', 'tdnn1', 'conv', 'kernel') →
    'blocks.1.tdnn1.conv.conv.weight'; BatchNorm scale/mean/var → weight/running_*."""
    *modules, leaf = path
    prefix = ".".join(re.sub(r"^blocks_(\d+)$", r"blocks.\1", m) for m in modules)
    if leaf == "kernel":
        return f"{prefix}.conv.weight"
    if leaf in ("scale", "mean", "var"):
        return f"{prefix}.norm." + {"scale": "weight", "mean": "running_mean", "var": "running_var"}[leaf]
    if leaf == "bias":
        return prefix  # resolved by the caller: conv or norm, whichever its module is
    raise KeyError(f"unexpected leaf {'/'.join(path)}")


def _path_names(path) -> tuple[str, ...]:
    return tuple(getattr(p, "key", getattr(p, "name", str(p))) for p in path)


def convert(sd: Mapping[str, np.ndarray], cfg: EcapaConfig | None = None) -> tuple[EcapaConfig, PyTree, PyTree]:
    """(cfg, params, batch_stats) from a speechbrain ECAPA_TDNN state dict. Every tensor
    must be used and every Flax leaf found, with matching shapes."""
    cfg = cfg or config_from_state_dict(sd)
    x = jnp.zeros((1, 8, cfg.input_dim), jnp.float32)
    shapes = jax.eval_shape(lambda: Ecapa(cfg).init(jax.random.PRNGKey(0), x))
    used: set[str] = set()
    kernels = {_path_names(p)[:-1] for p, _ in jax.tree_util.tree_flatten_with_path(shapes["params"])[0]
               if _path_names(p)[-1] == "kernel"}

    def fetch(path, leaf):
        names = _path_names(path)
        key = torch_key(names)
        if names[-1] == "bias":
            key += ".conv.bias" if names[:-1] in kernels else ".norm.bias"
        if key not in sd:
            raise KeyError(f"state dict has no {key!r} (for {'/'.join(names)})")
        v = np.asarray(sd[key], np.float32)
        if names[-1] == "kernel":
            v = v.transpose(2, 1, 0)                                           # (out, in, k) → (k, in, out)
        if v.shape != leaf.shape:
            raise ValueError(f"{key}: shape {v.shape} but {'/'.join(names)} needs {leaf.shape}")
        used.add(key)
        return jnp.asarray(v)

    params = jax.tree_util.tree_map_with_path(fetch, shapes["params"])
    batch_stats = jax.tree_util.tree_map_with_path(fetch, shapes["batch_stats"])
    unused = sorted(k for k in sd if k not in used and not k.endswith("num_batches_tracked"))
    if unused:
        raise ValueError(f"{len(unused)} tensors of the state dict have no place in {cfg}: {unused[:8]}")
    return cfg, params, batch_stats


def load_speechbrain_ecapa(path: str, **overrides) -> tuple[EcapaConfig, PyTree, PyTree]:
    """(cfg, params, batch_stats) of a speechbrain ``embedding_model.ckpt`` (or .safetensors)."""
    sd = load_state_dict(path)
    return convert(sd, config_from_state_dict(sd, **overrides))
