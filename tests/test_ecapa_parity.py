"""Parity with speechbrain's PyTorch ECAPA_TDNN: the same random weights give the same
embedding; padded batches in jaxdis give each utterance's unpadded speechbrain embedding;
the default (C = 512) layout maps key for key; checkpoints load from torch.save and
safetensors files."""

import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdis.convert.speechbrain_ecapa import config_from_state_dict, convert, load_speechbrain_ecapa
from jaxdis.models.ecapa import Ecapa

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch


def _speechbrain_ecapa():
    """speechbrain's ECAPA_TDNN class. speechbrain imports torchaudio at package import;
    the model itself needs none of it, so a stub stands in when torchaudio is absent."""
    if "torchaudio" not in sys.modules:
        try:
            import torchaudio  # noqa: F401
        except Exception:  # absent, or its native library does not load beside this torch
            stub = types.ModuleType("torchaudio")
            stub.__version__ = "0.0"
            stub.list_audio_backends = lambda: []
            sys.modules["torchaudio"] = stub
    ecapa = pytest.importorskip("speechbrain.lobes.models.ECAPA_TDNN")
    return ecapa.ECAPA_TDNN


def _random_model(**kwargs):
    """A speechbrain ECAPA in eval mode with random weights, BatchNorm affines and statistics."""
    torch.manual_seed(0)
    model = _speechbrain_ecapa()(80, **kwargs)
    with torch.no_grad():
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.normal_(0, 0.5)
            elif name.endswith("running_var"):
                b.uniform_(0.5, 2.0)
        for name, p in model.named_parameters():
            if ".norm." in name or name.startswith("asp_bn"):
                p.normal_(1.0 if name.endswith("weight") else 0.0, 0.2)
    return model.eval()


SMALL = dict(lin_neurons=24, channels=[24, 32, 32, 32, 96], attention_channels=16, se_channels=8, res2net_scale=4)


def test_embeddings_match_speechbrain():
    model = _random_model(**SMALL)                  # C₀ ≠ C₁: block 1 has a shortcut conv
    sd = {k: v.numpy() for k, v in model.state_dict().items()}
    cfg, params, stats = convert(sd)
    assert cfg.channels == (24, 32, 32, 32, 96) and cfg.res2net_scale == 4 and cfg.embed_dim == 24
    variables = {"params": params, "batch_stats": stats}
    apply = jax.jit(Ecapa(cfg).apply)

    x = np.random.default_rng(0).standard_normal((3, 61, 80)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()[:, 0]                           # (3, 24)
    emb, _ = apply(variables, jnp.asarray(x))
    np.testing.assert_allclose(emb, ref, atol=1e-4, rtol=0)
    assert np.abs(ref).max() > 0.1

    # Variable lengths in one padded batch = each utterance alone in speechbrain.
    lengths = [61, 34, 17]
    mask = np.arange(61)[None] < np.array(lengths)[:, None]
    emb, _ = apply(variables, jnp.asarray(x), jnp.asarray(mask))
    for i, n in enumerate(lengths):
        with torch.no_grad():
            alone = model(torch.from_numpy(x[i:i + 1, :n])).numpy()[0, 0]
        np.testing.assert_allclose(emb[i], alone, atol=1e-4, rtol=0)


def test_default_layout_maps_every_key(tmp_path):
    """speechbrain's ECAPA_TDNN(80, lin_neurons=192) (C = 512, the VoxCeleb checkpoint's
    layout at C = 512): every tensor has its place; files round-trip."""
    model = _speechbrain_ecapa()(80, lin_neurons=192)
    sd = {k: v.numpy() for k, v in model.state_dict().items()}
    cfg = config_from_state_dict(sd)
    assert cfg.channels == (512, 512, 512, 512, 1536) and cfg.kernel_sizes == (5, 3, 3, 3, 1)
    assert cfg.res2net_scale == 8 and cfg.se_channels == 128 and cfg.attention_channels == 128
    assert cfg.global_context and cfg.embed_dim == 192
    cfg, params, stats = convert(sd, cfg)
    np.testing.assert_array_equal(params["blocks_2"]["res2net_block"]["blocks_6"]["conv"]["kernel"],
                                  sd["blocks.2.res2net_block.blocks.6.conv.conv.weight"].transpose(2, 1, 0))
    np.testing.assert_array_equal(stats["asp_bn"]["var"], sd["asp_bn.norm.running_var"])
    n_leaves = len(jax.tree.leaves(params)) + len(jax.tree.leaves(stats))
    assert n_leaves == sum(not k.endswith("num_batches_tracked") for k in sd)

    torch.save(model.state_dict(), tmp_path / "embedding_model.ckpt")
    _, p2, s2 = load_speechbrain_ecapa(str(tmp_path / "embedding_model.ckpt"))
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v) for k, v in sd.items()}, str(tmp_path / "m.safetensors"))
    _, p3, s3 = load_speechbrain_ecapa(str(tmp_path / "m.safetensors"))
    for a, b, c in zip(jax.tree.leaves((params, stats)), jax.tree.leaves((p2, s2)), jax.tree.leaves((p3, s3))):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)

    bad = dict(sd, extra=np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="no place"):
        convert(bad, cfg)
