"""Test support: save a diffusers SD1.x pipeline as one checkpoint in the original CompVis/LDM key
layout (what the SD1.5 release, ComfyUI and the AUTOMATIC1111 web UI use), written here
independently of diffusers' LDM -> diffusers conversion so that loading it tests that mapping.

Works for any UNet2DConditionModel / AutoencoderKL depth (the tiny model has 2 blocks, SD1.5 4).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from review.media.restore.sd15_tiny import CHECKPOINT_MARKER_KEY, CHECKPOINT_MARKER_VALUE

_RESNET = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"),
           ("conv2", "out_layers.3"), ("time_emb_proj", "emb_layers.1"),
           ("conv_shortcut", "skip_connection")]
_UNET_TOP = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
             "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}


def _sub(key: str, pairs: list[tuple[str, str]]) -> str:
    for a, b in pairs:
        key = key.replace(a, b)
    return key


def unet_prefixes(config: Any) -> list[tuple[str, str]]:
    """(diffusers prefix, LDM prefix) for every block of a UNet2DConditionModel config."""
    n = len(config.block_out_channels)
    per = config.layers_per_block
    out: list[tuple[str, str]] = []
    for i, kind in enumerate(config.down_block_types):
        for j in range(per):
            ldm = f"input_blocks.{i * (per + 1) + j + 1}"
            out.append((f"down_blocks.{i}.resnets.{j}.", f"{ldm}.0."))
            if kind.startswith("CrossAttn"):
                out.append((f"down_blocks.{i}.attentions.{j}.", f"{ldm}.1."))
        if i < n - 1:
            out.append((f"down_blocks.{i}.downsamplers.0.conv.",
                        f"input_blocks.{(i + 1) * (per + 1)}.0.op."))
    for i, kind in enumerate(config.up_block_types):
        attn = kind.startswith("CrossAttn")
        for j in range(per + 1):
            ldm = f"output_blocks.{i * (per + 1) + j}"
            out.append((f"up_blocks.{i}.resnets.{j}.", f"{ldm}.0."))
            if attn:
                out.append((f"up_blocks.{i}.attentions.{j}.", f"{ldm}.1."))
        if i < n - 1:
            out.append((f"up_blocks.{i}.upsamplers.0.",
                        f"output_blocks.{i * (per + 1) + per}.{2 if attn else 1}."))
    out += [("mid_block.attentions.0.", "middle_block.1."), ("mid_block.resnets.0.", "middle_block.0."),
            ("mid_block.resnets.1.", "middle_block.2.")]
    return out


def unet_to_ldm(unet: Any) -> dict[str, torch.Tensor]:
    prefixes = unet_prefixes(unet.config)
    out = {}
    for key, value in unet.state_dict().items():
        stem, _, leaf = key.rpartition(".")
        if stem in _UNET_TOP:
            new = f"{_UNET_TOP[stem]}.{leaf}"
        else:
            hf, ldm = next((a, b) for a, b in prefixes if key.startswith(a))
            rest = key[len(hf):]
            if ".resnets." in hf:
                rest = _sub(rest, _RESNET)
            new = ldm + rest
        out["model.diffusion_model." + new] = value
    return out


def vae_to_ldm(vae: Any) -> dict[str, torch.Tensor]:
    n = len(vae.config.block_out_channels)
    pairs: list[tuple[str, str]] = []
    for i in range(n):
        pairs += [(f"encoder.down_blocks.{i}.resnets.", f"encoder.down.{i}.block."),
                  (f"encoder.down_blocks.{i}.downsamplers.0.", f"encoder.down.{i}.downsample."),
                  (f"decoder.up_blocks.{i}.resnets.", f"decoder.up.{n - 1 - i}.block."),
                  (f"decoder.up_blocks.{i}.upsamplers.0.", f"decoder.up.{n - 1 - i}.upsample.")]
    for part in ("encoder", "decoder"):
        pairs += [(f"{part}.mid_block.resnets.0.", f"{part}.mid.block_1."),
                  (f"{part}.mid_block.resnets.1.", f"{part}.mid.block_2."),
                  (f"{part}.mid_block.attentions.0.", f"{part}.mid.attn_1."),
                  (f"{part}.conv_norm_out.", f"{part}.norm_out.")]
    attn = [("group_norm.", "norm."), ("to_q.", "q."), ("to_k.", "k."), ("to_v.", "v."),
            ("to_out.0.", "proj_out.")]
    out = {}
    for key, value in vae.state_dict().items():
        new = next((b + key[len(a):] for a, b in pairs if key.startswith(a)), key)
        new = new.replace("conv_shortcut", "nin_shortcut")
        if ".mid.attn_1." in new:
            new = _sub(new, attn)
            if new.endswith(("q.weight", "k.weight", "v.weight", "proj_out.weight")):
                value = value[:, :, None, None]  # LDM's attention projections are 1x1 convs
        out["first_stage_model." + new] = value
    return out


def text_encoder_to_ldm(text_encoder: Any) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in text_encoder.state_dict().items():
        key = key if key.startswith("text_model.") else "text_model." + key
        out["cond_stage_model.transformer." + key] = value
    n = text_encoder.config.max_position_embeddings
    out["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.arange(n)[None]
    return out


def pipeline_to_ldm(pipe: Any) -> dict[str, torch.Tensor]:
    """All weights of an SD1.x pipeline under the original checkpoint's keys."""
    state = {**unet_to_ldm(pipe.unet), **vae_to_ldm(pipe.vae),
             **text_encoder_to_ldm(pipe.text_encoder)}
    # the release also carries the training schedule's buffers
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    state["betas"] = betas.float()
    state["alphas_cumprod"] = torch.cumprod(1 - betas, 0).float()
    return {k: v.detach().contiguous().clone() for k, v in state.items()}


def with_ema(state: dict[str, torch.Tensor], ema_unet: dict[str, torch.Tensor]
             ) -> dict[str, torch.Tensor]:
    """A "full" checkpoint: ``state``'s UNet as the training weights plus ``ema_unet`` (LDM keys)
    as the EMA copy under model_ema.<key without dots>, as the original training saved it."""
    out = dict(state)
    for k, v in ema_unet.items():
        out["model_ema." + "".join(k.split(".")[1:])] = v
    out["model_ema.decay"] = torch.tensor(0.9999)
    out["model_ema.num_updates"] = torch.tensor(1000, dtype=torch.int32)
    return out


def save_checkpoint(state: dict[str, torch.Tensor], path: Path, *, tiny: bool = True) -> Path:
    """.safetensors (marker in the metadata) or .ckpt (``{"state_dict": ..}`` as the release)."""
    marker = {CHECKPOINT_MARKER_KEY: CHECKPOINT_MARKER_VALUE} if tiny else {}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path), metadata={"format": "pt", **marker})
    else:
        torch.save({"state_dict": state, "global_step": 840000, **marker}, path)
    return path
