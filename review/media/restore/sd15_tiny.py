"""A tiny, randomly initialised SD1.5-architecture pipeline built in code, for tests and smoke runs.

Same component classes as Stable Diffusion 1.5 (UNet2DConditionModel, AutoencoderKL, CLIP text
encoder and tokenizer, PNDM scheduler) with diffusers' own test sizes, so that every code path
(saving, loading through :func:`review.media.restore.sd15_weights.load_pipeline`, VAE encode, text
encode, denoising, decode) runs in milliseconds. Its output is noise-like and must never be
presented as a restoration: the folder carries a ``tiny_sd15.json`` marker, and everything it
produces has ``smoke_test: true`` and a model identity starting with ``tiny-``.

The tokenizer is CLIP's byte-level BPE with a vocabulary of the 256 byte symbols (plain and
word-final ``</w>``) and no merges: any prompt tokenises, one token per character.

Also here: :func:`sd15_sized_components`, the real SD1.5 sizes with random weights (no
download), used by the benchmarks.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from review.media.restore.clip_tokenizer import write_vocab

MARKER = "tiny_sd15.json"
# In a single-file (CompVis layout) copy of the tiny model: safetensors metadata, or a top-level
# entry of a .ckpt, so the loader knows to use the tiny configs instead of SD1.5's.
CHECKPOINT_MARKER_KEY = "review.model"
CHECKPOINT_MARKER_VALUE = "tiny_sd15"
BUILD_VERSION = 1  # bump when the recipe changes: the folder is rebuilt


def write_tokenizer_files(folder: Path) -> tuple[Path, Path]:
    """vocab.json (514 tokens: 256 bytes, 256 word-final bytes, BOS, EOS) and empty merges."""
    return write_vocab(folder, [])


def _tokenizer(workdir: Path) -> Any:
    """A CLIPTokenizer loaded from the vocab.json + merges.txt written in ``workdir``.

    model_max_length must be given: without it the tokenizer pads to ~1e30 tokens.
    """
    from transformers import CLIPTokenizer

    write_tokenizer_files(workdir)
    return CLIPTokenizer.from_pretrained(str(workdir), model_max_length=77,
                                         local_files_only=True)


def tiny_components(workdir: Path) -> dict[str, Any]:
    """The tiny pipeline's components, seeded so every build has identical weights."""
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = _tokenizer(workdir)
    n_vocab = len(tokenizer.get_vocab())
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=2, sample_size=32, in_channels=4,
        out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
    )
    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=[32, 64], in_channels=3, out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"], latent_channels=4,
    )
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=5,
        vocab_size=n_vocab, max_position_embeddings=77, layer_norm_eps=1e-5,
        bos_token_id=n_vocab - 2, eos_token_id=n_vocab - 1, pad_token_id=n_vocab - 1,
    ))
    scheduler = PNDMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        num_train_timesteps=1000, skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False,
    )
    return {"unet": unet, "vae": vae, "text_encoder": text_encoder, "tokenizer": tokenizer,
            "scheduler": scheduler}


def _is_built(folder: Path) -> bool:
    try:
        marker = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return marker.get("version") == BUILD_VERSION and (folder / "model_index.json").is_file()


def build_tiny_sd15(folder: Path) -> Path:
    """Build the tiny pipeline and save it under ``folder`` (once; later calls reuse it).

    Built in a temporary sibling folder and renamed into place, so a concurrent reader never
    sees half a pipeline; returns ``folder``.
    """
    folder = Path(folder)
    if _is_built(folder):
        return folder
    from diffusers import StableDiffusionImg2ImgPipeline

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny_sd15-", dir=folder.parent))
    try:
        comps = tiny_components(tmp / "_tok")
        # Any: a type checker sees diffusers' top-level name as its torch-less placeholder
        pipe: Any = StableDiffusionImg2ImgPipeline(
            **comps, safety_checker=None, feature_extractor=None,
            requires_safety_checker=False,
        )
        out = tmp / "pipe"
        pipe.save_pretrained(out, safe_serialization=True)
        (out / MARKER).write_text(json.dumps({
            "version": BUILD_VERSION, "smoke_test": True,
            "note": "randomly initialised, for tests only: not a restoration model",
        }))
        if _is_built(folder):  # another process finished first: never delete its folder
            return folder
        if folder.exists():
            shutil.rmtree(folder)  # an old recipe version or a broken build
        try:
            os.replace(out, folder)
        except OSError:
            if not _is_built(folder):  # lost a race against another builder: fine if it won
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def sd15_sized_components(workdir: Path, seed: int = 0) -> dict[str, Any]:
    """Components with Stable Diffusion 1.5's sizes and random weights (benchmarks only).

    UNet block_out_channels (320, 640, 1280, 1280), cross-attention 768, 8 heads; VAE
    (128, 256, 512, 512); CLIP ViT-L/14 text encoder (hidden 768, 12 layers, 12 heads,
    intermediate 3072); PNDM scheduler with SD1.5's configuration. About 1.07 B parameters.
    """
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = _tokenizer(workdir)
    n_vocab = len(tokenizer.get_vocab())
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768,
        attention_head_dim=8,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
        block_out_channels=(128, 256, 512, 512), sample_size=512,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(
        hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12,
        projection_dim=768, vocab_size=n_vocab, max_position_embeddings=77,
        hidden_act="quick_gelu", bos_token_id=n_vocab - 2, eos_token_id=n_vocab - 1,
        pad_token_id=n_vocab - 1,
    ))
    scheduler = PNDMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        num_train_timesteps=1000, skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False,
    )
    return {"unet": unet, "vae": vae, "text_encoder": text_encoder, "tokenizer": tokenizer,
            "scheduler": scheduler}
