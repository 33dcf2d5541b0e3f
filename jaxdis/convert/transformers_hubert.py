"""transformers HubertModel / Wav2Vec2Model / WavLMModel weights → FrameEncoder parameters.

    cfg, params = load_pretrained("path/to/hubert-base-ls960")   # config.json + model.safetensors
    last, aux = FrameEncoder(cfg).apply({"params": params}, wav, mask)

Reads safetensors with numpy (no torch needed) or torch files with
``torch.load(weights_only=True)``. Head weights (CTC, quantizer, HuBERT's final_proj …)
are skipped; a ``hubert.``/``wav2vec2.``/``wavlm.`` prefix (task models) is stripped.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from jaxdis.models.transformer import FrameEncoderConfig

PREFIXES = ("hubert.", "wav2vec2.", "wavlm.", "model.")
# Keys of heads and pre-training modules that the encoder does not use.
SKIP = re.compile(r"^(quantizer|project_q|project_hid|final_proj|label_embs_concat|lm_head|classifier|projector|"
                  r"layer_weights|adapter\.)")


def config_from_hf(hf: Mapping[str, Any] | Any, **overrides) -> FrameEncoderConfig:
    """FrameEncoderConfig from a transformers config object or its config.json dict."""
    d = hf if isinstance(hf, Mapping) else hf.to_dict()
    kind = d.get("model_type", "hubert")
    if kind not in ("hubert", "wav2vec2", "wavlm"):
        raise ValueError(f"model_type {kind!r} is not hubert, wav2vec2 or wavlm")
    for key in ("hidden_act", "feat_extract_activation"):
        if d.get(key, "gelu") != "gelu":
            raise NotImplementedError(f"{key}={d[key]!r}: only gelu is implemented")
    if d.get("conv_pos_batch_norm", False):
        raise NotImplementedError("conv_pos_batch_norm=True (a BatchNorm positional conv) is not implemented")
    fields = dict(
        hidden=d["hidden_size"], layers=d["num_hidden_layers"], heads=d["num_attention_heads"],
        mlp=d["intermediate_size"], conv_dim=tuple(d["conv_dim"]), conv_kernel=tuple(d["conv_kernel"]),
        conv_stride=tuple(d["conv_stride"]), conv_bias=bool(d.get("conv_bias", False)),
        feat_norm=d.get("feat_extract_norm", "group"),
        feat_proj_norm=bool(d.get("feat_proj_layer_norm", True)) if kind == "hubert" else True,
        pos_conv_kernel=d["num_conv_pos_embeddings"], pos_conv_groups=d["num_conv_pos_embedding_groups"],
        stable_layer_norm=bool(d.get("do_stable_layer_norm", False)), rel_pos_bias=kind == "wavlm",
        num_buckets=d.get("num_buckets", 320), max_distance=d.get("max_bucket_distance", 800),
        layer_norm_eps=d.get("layer_norm_eps", 1e-5), dropout=d.get("hidden_dropout", 0.1),
        activation_dropout=d.get("activation_dropout", 0.0), feat_dropout=d.get("feat_proj_dropout", 0.0))
    return FrameEncoderConfig(**{**fields, **overrides})


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().float().numpy()
    return np.asarray(x, dtype=np.float32)


def _set(tree: dict, path: str, value: np.ndarray) -> None:
    *parents, leaf = path.split("/")
    for p in parents:
        tree = tree.setdefault(p, {})
    if leaf in tree:
        raise ValueError(f"two checkpoint keys map to {path}")
    tree[leaf] = value


def _weight_norm_from_plain(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A plain (out, in/g, k) weight as (g, v) with w = g · v / ‖v‖ per tap."""
    return np.sqrt((w ** 2).sum(axis=(0, 1))), w


def convert_state_dict(state_dict: Mapping[str, Any], cfg: FrameEncoderConfig | None = None) -> dict:
    """PyTorch state dict (tensors or arrays) → nested FrameEncoder ``params`` (numpy).

    If `cfg` is given, the result is checked against it (every parameter present once,
    with the right shape) by ``check_params``."""
    params: dict = {}
    pos_g = pos_v = None
    for key, value in state_dict.items():
        for prefix in PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
                break
        w = _np(value)
        if key.startswith("encoder.pos_conv_embed.conv."):
            leaf = key[len("encoder.pos_conv_embed.conv."):]
            if leaf in ("parametrizations.weight.original0", "weight_g"):
                pos_g = w.reshape(-1)                                           # (1, 1, k) → (k,)
            elif leaf in ("parametrizations.weight.original1", "weight_v"):
                pos_v = w
            elif leaf == "weight":
                pos_g, pos_v = _weight_norm_from_plain(w)
            elif leaf == "bias":
                _set(params, "encoder_pos_conv_embed/bias", w)
            else:
                raise KeyError(f"unexpected key {key}")
            continue
        if key.startswith("encoder.pos_conv_embed.batch_norm"):
            raise NotImplementedError("conv_pos_batch_norm checkpoints are not supported")
        if SKIP.match(key):
            continue
        path, value = _map_key(key, w)
        _set(params, path, value)
    if pos_v is not None:
        _set(params, "encoder_pos_conv_embed/weight_v", pos_v.transpose(2, 1, 0))  # (out, in/g, k) → (k, in/g, out)
        _set(params, "encoder_pos_conv_embed/weight_g", pos_g)
    if cfg is not None:
        check_params(params, cfg)
    return params


_LAYER = re.compile(r"^encoder\.layers\.(\d+)\.(.+)$")
_CONV = re.compile(r"^feature_extractor\.conv_layers\.(\d+)\.(conv|layer_norm)\.(weight|bias)$")


def _norm_leaf(leaf: str) -> str:
    return {"weight": "scale", "bias": "bias"}[leaf]


def _map_key(key: str, w: np.ndarray) -> tuple[str, np.ndarray]:
    """One transformers key → (flax path, array in flax layout)."""
    if key == "masked_spec_embed":
        return "masked_spec_embed", w
    m = _CONV.match(key)
    if m:
        i, mod, leaf = m.groups()
        if mod == "conv":
            return f"feature_extractor/conv_layers_{i}/conv/" + ("kernel" if leaf == "weight" else "bias"), \
                (w.transpose(2, 1, 0) if leaf == "weight" else w)              # (out, in, k) → (k, in, out)
        return f"feature_extractor/conv_layers_{i}/layer_norm/{_norm_leaf(leaf)}", w
    if key.startswith("feature_projection.layer_norm."):
        return f"feature_projection/layer_norm/{_norm_leaf(key.rsplit('.', 1)[1])}", w
    if key.startswith("feature_projection.projection."):
        return _dense("feature_projection/projection", key, w)
    if key.startswith("encoder.layer_norm."):
        return f"encoder_layer_norm/{_norm_leaf(key.rsplit('.', 1)[1])}", w
    m = _LAYER.match(key)
    if m:
        i, rest = m.groups()
        base = f"encoder_layers_{i}"
        if rest == "attention.gru_rel_pos_const":
            return f"{base}/attention/gru_rel_pos_const", w.reshape(-1)      # (1, N, 1, 1) → (N,)
        if rest == "attention.rel_attn_embed.weight":
            return f"{base}/attention/rel_attn_embed", w                      # (buckets, N)
        mod, leaf = rest.rsplit(".", 1)
        if mod in ("layer_norm", "final_layer_norm"):
            return f"{base}/{mod}/{_norm_leaf(leaf)}", w
        if mod in ("attention.q_proj", "attention.k_proj", "attention.v_proj", "attention.out_proj",
                   "attention.gru_rel_pos_linear", "feed_forward.intermediate_dense", "feed_forward.output_dense"):
            return _dense(f"{base}/{mod.replace('.', '/')}", key, w)
    raise KeyError(f"no FrameEncoder parameter for checkpoint key {key!r}")


def _dense(path: str, key: str, w: np.ndarray) -> tuple[str, np.ndarray]:
    return (f"{path}/kernel", w.T) if key.endswith("weight") else (f"{path}/bias", w)  # torch (out, in) → (in, out)


def check_params(params: Mapping, cfg: FrameEncoderConfig) -> None:
    """Raises if `params` does not match FrameEncoder(cfg)'s parameters (names and shapes);
    a missing ``masked_spec_embed`` is allowed (inference checkpoints may lack it)."""
    import jax
    import jax.numpy as jnp

    from jaxdis.models.transformer import FrameEncoder

    n = 400 * int(np.prod(cfg.conv_stride)) if cfg.frontend == "waveform" else 8
    x = jnp.zeros((1, n) if cfg.frontend == "waveform" else (1, n, cfg.n_mels))
    expect = jax.eval_shape(lambda: FrameEncoder(cfg).init(jax.random.PRNGKey(0), x))["params"]
    flat_e = {"/".join(k.key for k in p): v.shape for p, v in jax.tree_util.tree_leaves_with_path(expect)}
    flat_p = {"/".join(k.key for k in p): np.shape(v) for p, v in jax.tree_util.tree_leaves_with_path(params)}
    flat_p.pop("masked_spec_embed", None)
    missing, extra = sorted(set(flat_e) - set(flat_p)), sorted(set(flat_p) - set(flat_e))
    bad = [f"{k}: {flat_p[k]} vs {flat_e[k]}" for k in flat_e.keys() & flat_p.keys() if tuple(flat_p[k]) != tuple(flat_e[k])]
    if missing or extra or bad:
        raise ValueError(f"checkpoint does not match the config: missing {missing[:5]}, unexpected {extra[:5]}, "
                         f"wrong shapes {bad[:5]}")


def load_state_dict(path: str) -> dict[str, np.ndarray]:
    """A .safetensors file (read with numpy) or a torch file (``weights_only=True``)."""
    if path.endswith(".safetensors"):
        from safetensors.numpy import load_file

        return load_file(path)
    import torch

    sd = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(sd, Mapping) and "state_dict" in sd and isinstance(sd["state_dict"], Mapping):
        sd = sd["state_dict"]
    return {k: _np(v) for k, v in sd.items()}


def load_pretrained(path: str, **overrides) -> tuple[FrameEncoderConfig, dict]:
    """A transformers model directory (config.json + model.safetensors or pytorch_model.bin)
    → (FrameEncoderConfig, params). `overrides` change config fields (dtype, frozen_layers…)."""
    with open(os.path.join(path, "config.json")) as f:
        cfg = config_from_hf(json.load(f), **overrides)
    for name in ("model.safetensors", "pytorch_model.bin"):
        if os.path.exists(os.path.join(path, name)):
            return cfg, convert_state_dict(load_state_dict(os.path.join(path, name)), cfg)
    raise FileNotFoundError(f"no model.safetensors or pytorch_model.bin in {path}")


def merge_params(init: Mapping, loaded: Mapping) -> dict:
    """`init` with every leaf that `loaded` has replaced (e.g. keep a fresh masked_spec_embed)."""
    out = {}
    for k, v in init.items():
        if isinstance(v, Mapping):
            out[k] = merge_params(v, loaded.get(k, {}))
        else:
            out[k] = np.asarray(loaded[k], dtype=np.asarray(v).dtype) if k in loaded else v
    return out
