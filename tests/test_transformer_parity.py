"""FrameEncoder vs transformers: converted weights give the same hidden states (1e-4)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import jax  # noqa: E402

from jaxdis.convert.transformers_hubert import config_from_hf, convert_state_dict, merge_params  # noqa: E402
from jaxdis.models.transformer import FrameEncoder  # noqa: E402

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, conv_dim=(16, 16, 16),
            conv_kernel=(10, 3, 3), conv_stride=(5, 2, 2), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
LARGE_LAYOUT = dict(do_stable_layer_norm=True, feat_extract_norm="layer", conv_bias=True)
WAVLM = dict(num_buckets=32, max_bucket_distance=40)  # offsets beyond 40 frames exercise the log buckets

CASES = {
    "hubert": ("HubertConfig", "HubertModel", {}),
    "hubert_stable_ln": ("HubertConfig", "HubertModel", LARGE_LAYOUT),
    "wav2vec2": ("Wav2Vec2Config", "Wav2Vec2Model", {}),
    "wav2vec2_stable_ln": ("Wav2Vec2Config", "Wav2Vec2Model", LARGE_LAYOUT),
    "wavlm": ("WavLMConfig", "WavLMModel", WAVLM),
    "wavlm_stable_ln": ("WavLMConfig", "WavLMModel", {**WAVLM, **LARGE_LAYOUT}),
}


def _torch_model(name):
    cfg_cls, model_cls, extra = CASES[name]
    torch.manual_seed(0)
    model = getattr(transformers, model_cls)(getattr(transformers, cfg_cls)(**TINY, **extra)).eval()
    with torch.no_grad():  # move the parameters that init to constants, so they are tested too
        for key, p in model.named_parameters():
            if "layer_norm" in key or "gru_rel_pos" in key:
                p.add_(0.2 * torch.randn_like(p))
            if "rel_attn_embed" in key:
                p.normal_(0.0, 1.0)
    return model


@pytest.mark.torch
@pytest.mark.parametrize("name", list(CASES))
def test_hidden_states_match_transformers(name):
    model = _torch_model(name)
    rng = np.random.default_rng(0)
    wav = rng.standard_normal((2, 4000)).astype(np.float32)
    mask = np.ones((2, 4000), bool)
    mask[1, 2500:] = False   # second row padded: 2500 real samples
    wav[1, 2500:] = 0.0
    with torch.no_grad():
        ref = model(torch.from_numpy(wav), attention_mask=torch.from_numpy(mask.astype(np.int64)),
                    output_hidden_states=True)

    cfg = config_from_hf(model.config)
    params = convert_state_dict(model.state_dict(), cfg)
    assert params["masked_spec_embed"].shape == (32,)
    last, aux = jax.jit(lambda p, x, m: FrameEncoder(cfg).apply({"params": p}, x, m))(params, wav, mask)

    frames = np.asarray(aux["mask"])
    assert frames.shape == (2, 199) and frames[0].all() and frames[1].sum() == 124  # (2500-10)//5+1 → //2 → //2
    assert len(aux["hidden_states"]) == len(ref.hidden_states) == 3
    for ours, theirs in zip(aux["hidden_states"], ref.hidden_states):
        theirs = theirs.numpy()
        assert np.abs(theirs).max() > 0.1           # real signal, not zeros
        np.testing.assert_allclose(np.asarray(ours), theirs, atol=1e-4, rtol=0)
    np.testing.assert_allclose(np.asarray(last), ref.last_hidden_state.numpy(), atol=1e-4, rtol=0)


@pytest.mark.torch
def test_safetensors_roundtrip_and_weight_norm_forms(tmp_path):
    """A save_pretrained directory (safetensors, read without torch) loads to the same
    parameters; old weight_g/weight_v and plain-weight checkpoints give the same conv."""
    from safetensors.torch import save_file

    from jaxdis.convert.transformers_hubert import load_pretrained

    model = _torch_model("hubert")
    model.save_pretrained(tmp_path)
    cfg, params = load_pretrained(str(tmp_path))
    direct = convert_state_dict(model.state_dict(), cfg)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(direct)):
        np.testing.assert_array_equal(a, b)

    sd = {k: v for k, v in model.state_dict().items()}
    g = sd.pop("encoder.pos_conv_embed.conv.parametrizations.weight.original0")
    v = sd.pop("encoder.pos_conv_embed.conv.parametrizations.weight.original1")
    w = g * v / v.norm(dim=(0, 1), keepdim=True)
    old = convert_state_dict({**sd, "encoder.pos_conv_embed.conv.weight_g": g,
                              "encoder.pos_conv_embed.conv.weight_v": v}, cfg)
    plain = convert_state_dict({**sd, "encoder.pos_conv_embed.conv.weight": w}, cfg)
    save_file({**sd, "encoder.pos_conv_embed.conv.weight": w.contiguous()}, str(tmp_path / "plain.safetensors"))
    x = np.random.default_rng(1).standard_normal((1, 2000)).astype(np.float32)
    apply = jax.jit(lambda p: FrameEncoder(cfg).apply({"params": p}, x)[0])
    ref = np.asarray(apply(direct))
    np.testing.assert_allclose(np.asarray(apply(old)), ref, atol=1e-5)
    np.testing.assert_allclose(np.asarray(apply(plain)), ref, atol=1e-5)

    # A checkpoint without masked_spec_embed merges into freshly initialised parameters.
    init = FrameEncoder(cfg).init(jax.random.PRNGKey(0), x, span_mask=np.zeros((1, 99), bool))["params"]
    plain.pop("masked_spec_embed")
    merged = merge_params(init, plain)
    np.testing.assert_array_equal(merged["masked_spec_embed"], init["masked_spec_embed"])
    np.testing.assert_array_equal(merged["encoder_layers_1"]["attention"]["q_proj"]["kernel"],
                                  direct["encoder_layers_1"]["attention"]["q_proj"]["kernel"])
