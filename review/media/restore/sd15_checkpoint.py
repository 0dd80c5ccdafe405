"""Single-file SD1.5 checkpoints in the original CompVis/LDM key layout, loaded offline.

A ``v1-5-pruned-emaonly.safetensors`` (or ``.ckpt``) holds the UNet (``model.diffusion_model.*``),
the VAE (``first_stage_model.*``) and the CLIP text encoder (``cond_stage_model.transformer.*``)
but no configs and no tokenizer. The configs of Stable Diffusion 1.5 are constants (those of the
release's diffusers folder, written below), and the CLIP tokenizer's vocabulary and merges are
built from the BPE merges file that the ``open-clip-torch`` package ships, the way OpenAI CLIP's
``SimpleTokenizer`` builds them. Both are written once into a local config folder, so nothing is
ever downloaded.

Files are inspected before their weights are loaded: a ``.safetensors`` header is read directly;
a ``.ckpt`` is a pickle and is opened with ``torch.load(weights_only=True)`` only, allowing just the
harmless training metadata ComfyUI and AUTOMATIC1111 also allow (:func:`ckpt_safe_globals`), so
a file that needs arbitrary code is refused. Checkpoints of other families (SD2, SDXL, inpainting, LoRA) are
refused with a message naming what they look like. The weights are converted with diffusers'
own LDM -> diffusers key mapping and loaded strictly: a missing or misshapen tensor is an error.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import math
import os
import pickle
import shutil
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from review.media.restore.clip_tokenizer import write_vocab
from review.media.restore.sd15_tiny import CHECKPOINT_MARKER_KEY, CHECKPOINT_MARKER_VALUE


class CheckpointError(RuntimeError):
    """The file is not a loadable SD1.5 checkpoint; the message says what it looks like."""


UNET = "model.diffusion_model."
VAE = "first_stage_model."
CLIP = "cond_stage_model.transformer."
EMA = "model_ema."

# ----------------------------------------------------------------------------- SD1.5 constants

# The configs of the Stable Diffusion 1.5 release's diffusers folder (model_index.json,
# unet/, vae/, text_encoder/, scheduler/, tokenizer/), written in code so that a single
# checkpoint needs nothing beside it.
SD15_MODEL_INDEX = {
    "_class_name": "StableDiffusionPipeline",
    "feature_extractor": [None, None], "safety_checker": [None, None],
    "scheduler": ["diffusers", "PNDMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}
SD15_UNET = {
    "_class_name": "UNet2DConditionModel", "act_fn": "silu", "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280], "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                         "DownBlock2D"],
    "downsample_padding": 1, "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 4,
    "layers_per_block": 2, "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32,
    "out_channels": 4, "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D",
                       "CrossAttnUpBlock2D"],
}
SD15_VAE = {
    "_class_name": "AutoencoderKL", "act_fn": "silu", "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4, "in_channels": 3, "latent_channels": 4,
    "layers_per_block": 2, "norm_num_groups": 32, "out_channels": 3, "sample_size": 512,
    "up_block_types": ["UpDecoderBlock2D"] * 4, "scaling_factor": 0.18215,
}
SD15_TEXT_ENCODER = {  # CLIP ViT-L/14's text tower; token ids as in the release's config
    "architectures": ["CLIPTextModel"], "attention_dropout": 0.0, "bos_token_id": 0,
    "dropout": 0.0, "eos_token_id": 2, "hidden_act": "quick_gelu", "hidden_size": 768,
    "initializer_factor": 1.0, "initializer_range": 0.02, "intermediate_size": 3072,
    "layer_norm_eps": 1e-05, "max_position_embeddings": 77, "model_type": "clip_text_model",
    "num_attention_heads": 12, "num_hidden_layers": 12, "pad_token_id": 1, "projection_dim": 768,
    "vocab_size": 49408,
}
SD15_SCHEDULER = {
    "_class_name": "PNDMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
    "beta_start": 0.00085, "clip_sample": False, "num_train_timesteps": 1000,
    "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1, "trained_betas": None,
}
SD15_TOKENIZER = {
    "add_prefix_space": False, "bos_token": "<|startoftext|>", "do_lower_case": True,
    "eos_token": "<|endoftext|>", "errors": "replace", "model_max_length": 77,
    "pad_token": "<|endoftext|>", "tokenizer_class": "CLIPTokenizer",
    "unk_token": "<|endoftext|>",
}
CONFIG_VERSION = 1  # bump when a constant above changes: the folder is rewritten
CONFIG_MARKER = "review_sd15_config.json"

# ----------------------------------------------------------------------------- tokenizer

BPE_PACKAGE = "open-clip-torch"
BPE_INSTALL = f"pip install --no-deps {BPE_PACKAGE}==3.3.0"
BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
N_MERGES = 49152 - 256 - 2  # CLIP's vocabulary: 49408 = 2 * 256 bytes + merges + 2 specials


def clip_bpe_path() -> Path:
    """open_clip's BPE merges file, found without importing open_clip (which imports torch)."""
    spec = importlib.util.find_spec("open_clip")
    for root in (spec.submodule_search_locations or []) if spec is not None else []:
        candidate = Path(root) / BPE_FILE
        if candidate.is_file():
            return candidate
    raise CheckpointError(
        f"a single SD1.5 checkpoint needs CLIP's tokenizer vocabulary, which comes from the "
        f"{BPE_PACKAGE} package's open_clip/{BPE_FILE}, and that file was not found. Install "
        f"the package without its dependencies: {BPE_INSTALL}"
    )


def write_clip_tokenizer(folder: Path, bpe_path: Path) -> None:
    """vocab.json + merges.txt (+ tokenizer configs) as OpenAI CLIP's SimpleTokenizer builds
    them: byte symbols, the same with ``</w>``, one token per merge, then the two specials."""
    lines = gzip.open(bpe_path).read().decode("utf-8").split("\n")
    write_vocab(folder, [tuple(line.split()) for line in lines[1:N_MERGES + 1]])
    (folder / "tokenizer_config.json").write_text(json.dumps(SD15_TOKENIZER, indent=1))
    (folder / "special_tokens_map.json").write_text(json.dumps(
        {k: SD15_TOKENIZER[k] for k in ("bos_token", "eos_token", "pad_token", "unk_token")}))


def sd15_config_folder(folder: Path) -> Path:
    """Write the SD1.5 diffusers config folder (no weights) once; returns ``folder``.

    Written in a temporary sibling and renamed into place, so readers never see half of it.
    """
    folder = Path(folder)
    try:
        if json.loads((folder / CONFIG_MARKER).read_text())["version"] == CONFIG_VERSION:
            return folder
    except (OSError, ValueError, KeyError, TypeError):
        pass
    bpe = clip_bpe_path()
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".sd15_config-", dir=folder.parent))
    try:
        for sub, name, cfg in (("", "model_index.json", SD15_MODEL_INDEX),
                               ("unet", "config.json", SD15_UNET),
                               ("vae", "config.json", SD15_VAE),
                               ("text_encoder", "config.json", SD15_TEXT_ENCODER),
                               ("scheduler", "scheduler_config.json", SD15_SCHEDULER)):
            (tmp / sub).mkdir(parents=True, exist_ok=True)
            (tmp / sub / name).write_text(json.dumps(cfg, indent=1))
        write_clip_tokenizer(tmp / "tokenizer", bpe)
        (tmp / CONFIG_MARKER).write_text(json.dumps({
            "version": CONFIG_VERSION, "tokenizer_source": f"{BPE_PACKAGE}: open_clip/{BPE_FILE}"}))
        if (folder / CONFIG_MARKER).is_file():  # another process finished first
            return folder
        if folder.exists():
            shutil.rmtree(folder)
        try:
            os.replace(tmp, folder)
        except OSError:
            if not (folder / CONFIG_MARKER).is_file():  # lost a race: fine if the winner wrote it
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


# ----------------------------------------------------------------------------- inspecting


@dataclass(frozen=True)
class CheckpointInfo:
    """What an inspected checkpoint is: ``tiny`` is the in-code smoke-test model's layout."""

    family: str  # "sd15" | "tiny"
    ema: str  # "ema-only" (one UNet copy) | "ema+non-ema" (the EMA copy is used)
    dtypes: tuple[str, ...]


_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
           "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8",
           "BOOL": "bool"}
# Bytes per element of every dtype the safetensors format defines.
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I64": 8,
                "U64": 8, "I32": 4, "U32": 4, "I16": 2, "U16": 2, "I8": 1, "U8": 1, "BOOL": 1}


def _safetensors_header(path: Path) -> tuple[dict[str, tuple[int, ...]], dict[str, str], set[str]]:
    """Keys -> shapes, metadata and dtypes from the header, without reading any tensor.

    The header is checked as the safetensors format defines it (an 8-byte length, then a JSON
    object of tensors, each with a known dtype, a shape and byte offsets that lie in the file
    and fit the shape), so a damaged or foreign file is refused here with what is wrong, not
    with a traceback later.
    """
    def bad(why: str) -> CheckpointError:
        return CheckpointError(f"{path.name} is not a readable .safetensors file: {why}. It is damaged "
                               "or incomplete: download it again (check its size and checksum).")

    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise bad(f"it holds {size} bytes, fewer than the 8-byte header length")
            (n,) = struct.unpack("<Q", head)
            if n > min(100 * (1 << 20), size - 8):
                raise bad(f"its header length says {n:,} bytes but "
                          + (f"only {size - 8:,} follow" if n > size - 8 else "100 MiB is the limit"))
            raw = fh.read(n)
    except OSError as exc:
        raise CheckpointError(f"{path.name} cannot be read ({exc.strerror or exc})") from exc
    try:
        header = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # bad JSON or bad UTF-8 (a ValueError too)
        raise bad(f"its header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise bad(f"its header is a JSON {type(header).__name__}, not an object of tensors")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict):
        raise bad("its __metadata__ is not an object")
    data_bytes = size - 8 - n
    shapes: dict[str, tuple[int, ...]] = {}
    dtypes: set[str] = set()
    for key, entry in header.items():
        dtype = entry.get("dtype") if isinstance(entry, dict) else None
        shape = entry.get("shape") if isinstance(entry, dict) else None
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if dtype not in _DTYPE_BYTES:
            raise bad(f"tensor {key!r} has no known dtype ({dtype!r})")
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            raise bad(f"tensor {key!r} has no valid shape ({shape!r})")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(type(o) is int for o in offsets)
                or not 0 <= offsets[0] <= offsets[1] <= data_bytes):
            raise bad(f"tensor {key!r} lies outside the file (data_offsets {offsets!r}; the data "
                      f"section holds {data_bytes:,} bytes)")
        if offsets[1] - offsets[0] != math.prod(shape) * _DTYPE_BYTES[dtype]:
            raise bad(f"tensor {key!r} has {offsets[1] - offsets[0]:,} bytes for shape {shape} "
                      f"of {dtype}")
        shapes[key] = tuple(shape)
        dtypes.add(_DTYPES.get(dtype, dtype.lower()))
    return shapes, meta, dtypes


class LightningCallback:
    """Inert stand-in for a PyTorch Lightning callback class (``ModelCheckpoint``): training
    checkpoints use the class as the key of its saved state (best score, paths). It is kept as
    plain data and never runs; pytorch_lightning is not imported."""

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _numpy_scalar(dtype: Any, data: Any = None) -> Any:
    """numpy's scalar reconstruction (a saved np.float64 score), for numeric dtypes only."""
    import numpy as np

    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise pickle.UnpicklingError("a numpy scalar of object dtype is refused")
    if isinstance(data, str):  # written by Python 2: bytes as latin-1 text
        data = data.encode("latin-1")
    return np.frombuffer(data, dtype=dtype, count=1)[0] if data is not None else dtype.type()


def _codecs_encode(text: Any, encoding: str = "utf-8") -> bytes:
    """How protocol-2 pickles store bytes (``_codecs.encode(str, 'latin1')``): text codecs only."""
    if not isinstance(text, str) or encoding.lower().replace("_", "-") not in (
            "latin1", "latin-1", "iso-8859-1", "utf-8", "utf8", "ascii"):
        raise pickle.UnpicklingError(f"_codecs.encode with {encoding!r} is refused")
    return text.encode(encoding)


#: What torch.serialization.safe_globals takes: an allowed object, alone or with the name a file uses.
SafeGlobal = Callable[..., Any] | tuple[Callable[..., Any], str]


def ckpt_safe_globals() -> list[SafeGlobal]:
    """What ``.ckpt`` files may name besides tensors and plain containers, as ComfyUI and the
    AUTOMATIC1111 web UI allow: Lightning's ModelCheckpoint callback (as inert data), numpy
    scalars and dtypes (a saved best score), protocol-2 bytes and sets. All build plain data;
    anything else (os.system, eval, other classes) is still refused."""
    import numpy as np

    out: list[SafeGlobal] = [(LightningCallback, f"{ns}.callbacks.model_checkpoint.ModelCheckpoint")
                             for ns in ("pytorch_lightning", "lightning.pytorch")]
    out += [(_numpy_scalar, f"{mod}.multiarray.scalar") for mod in ("numpy.core", "numpy._core")]
    out += [(np.dtype, "numpy.dtype"), (_codecs_encode, "_codecs.encode"), (set, "__builtin__.set"),
            (set, "builtins.set")]
    numeric = ("Bool", "Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64",
               "Float16", "Float32", "Float64", "Complex64", "Complex128")
    dtypes = getattr(np, "dtypes", None)
    out += [(getattr(dtypes, f"{n}DType"), f"numpy.dtypes.{n}DType") for n in numeric
            if dtypes is not None and hasattr(dtypes, f"{n}DType")]
    return out


def _load_ckpt(path: Path) -> dict[str, Any]:
    """``torch.load(weights_only=True)``: tensors, plain containers and the harmless metadata of
    :func:`ckpt_safe_globals` only, never code."""
    import re
    import zipfile

    import torch

    try:
        with torch.serialization.safe_globals(ckpt_safe_globals()):
            obj = torch.load(path, map_location="cpu", weights_only=True,
                             mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as exc:
        names = sorted(set(re.findall(r"GLOBAL ([\w.]+)", str(exc))))
        if not names:
            raise CheckpointError(f"{path.name} is not a readable .ckpt file") from exc
        raise CheckpointError(
            f"{path.name} is a pickle that needs arbitrary Python code to load "
            f"({', '.join(names)}), which is refused: only tensors, plain containers, numpy "
            "scalars and PyTorch Lightning checkpoint-callback state are read from a .ckpt. Use "
            "a .safetensors copy of the same model, or convert this file with a tool you trust."
        ) from exc
    except (OSError, RuntimeError, EOFError, ValueError) as exc:
        raise CheckpointError(f"{path.name} is not a readable .ckpt file ({exc})") from exc
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path.name} holds a {type(obj).__name__}, not a state dict")
    return obj


def _unwrap(obj: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(tensors, the other top-level entries): checkpoints nest weights under "state_dict"."""
    import torch

    outer = obj
    while isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    return tensors, {k: v for k, v in outer.items() if k != "state_dict"}


def classify(shapes: dict[str, tuple[int, ...]], *, sd15_sizes: bool = True) -> str:
    """Raise CheckpointError naming what a non-SD1.5 file looks like; else the EMA kind.
    ``sd15_sizes=False`` (tiny model, or configs given by the user) skips the size check."""
    keys = list(shapes)
    if not keys:
        raise CheckpointError("the file holds no tensors")
    if any(k.startswith("conditioner.embedders.") for k in keys):
        raise CheckpointError("this looks like an SDXL checkpoint (conditioner.embedders.* keys); "
                              "only Stable Diffusion 1.x checkpoints are supported")
    if not any(k.startswith(UNET) for k in keys):
        if any("lora" in k.lower() for k in keys):
            raise CheckpointError("this looks like a LoRA file (lora_* adapter weights only), "
                                  "not a full model: LoRAs are not supported")
        raise CheckpointError("no Stable Diffusion UNet (model.diffusion_model.* keys) in the file;"
                              f" its keys look like {keys[:3]}")
    cross = {shapes[k][1] for k in keys if k.startswith(UNET) and k.endswith("attn2.to_k.weight")}
    if any(k.startswith("cond_stage_model.model.") for k in keys) or 1024 in cross:
        raise CheckpointError("this looks like a Stable Diffusion 2.x checkpoint (768-v or base: "
                              "OpenCLIP text encoder, cross-attention dim 1024); only SD 1.x "
                              "checkpoints are supported")
    conv_in = shapes.get(UNET + "input_blocks.0.0.weight")
    if conv_in is None or len(conv_in) != 4:
        raise CheckpointError("the UNet has no input convolution (input_blocks.0.0.weight)")
    if conv_in[1] != 4:
        what = "an inpainting model" if conv_in[1] == 9 else "not a plain text-to-image model"
        raise CheckpointError(f"this looks like {what}: its UNet takes {conv_in[1]} input "
                              "channels; img2img restoration needs a 4-channel SD1.5 UNet")
    for prefix, part in ((VAE, "VAE (first_stage_model.*)"),
                         (CLIP, "CLIP text encoder (cond_stage_model.transformer.*)")):
        if not any(k.startswith(prefix) for k in keys):
            raise CheckpointError(f"the checkpoint has no {part}: a UNet-only file cannot be used")
    if sd15_sizes and (cross != {768} or conv_in[0] != 320):
        raise CheckpointError(f"this is not SD1.x-sized (cross-attention dim {sorted(cross)}, "
                              f"{conv_in[0]} base channels; SD1.5 has 768 and 320)")
    n_ema = sum(k.startswith(EMA) for k in keys)
    return "ema+non-ema" if n_ema > 100 else "ema-only"


def _is_tiny(meta: dict[str, Any]) -> bool:
    return meta.get(CHECKPOINT_MARKER_KEY) == CHECKPOINT_MARKER_VALUE


def inspect_checkpoint(path: Path, *, sd15_sizes: bool = True) -> CheckpointInfo:
    """Classify a checkpoint from its keys and shapes (a .safetensors header is enough)."""
    if path.suffix.lower() == ".safetensors":
        shapes, meta, dtypes = _safetensors_header(path)
    else:
        tensors, meta = _unwrap(_load_ckpt(path))
        shapes = {k: tuple(v.shape) for k, v in tensors.items()}
        dtypes = {str(v.dtype).removeprefix("torch.") for v in tensors.values()}
    tiny = _is_tiny(meta)
    return CheckpointInfo("tiny" if tiny else "sd15",
                          classify(shapes, sd15_sizes=sd15_sizes and not tiny),
                          tuple(sorted(dtypes)))


# ----------------------------------------------------------------------------- loading


def _read_tensors(path: Path) -> dict[str, Any]:
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:  # safetensors raises its own SafetensorError
            raise CheckpointError(f"{path.name}: reading the tensors failed ({exc})") from exc
    return _unwrap(_load_ckpt(path))[0]


def _use_ema(state: dict[str, Any]) -> dict[str, Any]:
    """In a full checkpoint the EMA UNet (``model_ema.diffusion_model<key without dots>``) is
    the one to sample with; the EMA-only release already stores it under model.diffusion_model."""
    unet_keys = [k for k in state if k.startswith(UNET)]
    ema = {k: EMA + "".join(k.split(".")[1:]) for k in unet_keys}
    if sum(k.startswith(EMA) for k in state) > 100:
        missing = [e for e in ema.values() if e not in state]
        if missing:
            raise CheckpointError(f"the checkpoint has EMA weights but lacks {len(missing)} of "
                                  f"them (e.g. {missing[0]})")
        state = {**state, **{k: state[e] for k, e in ema.items()}}
    return {k: v for k, v in state.items() if not k.startswith(EMA)}


def _strict_load(module: Any, sd: dict[str, Any], part: str) -> None:
    expected = set(module.state_dict())
    missing, unexpected = sorted(expected - set(sd)), sorted(set(sd) - expected)
    if missing or unexpected:
        raise CheckpointError(f"the {part} weights do not match the SD1.5 architecture: "
                              f"{len(missing)} missing (e.g. {missing[:2]}), {len(unexpected)} "
                              f"unexpected (e.g. {unexpected[:2]})")
    try:
        module.load_state_dict(sd, strict=True, assign=True)
    except RuntimeError as exc:  # shape mismatches
        raise CheckpointError(f"the {part} weights do not fit the SD1.5 architecture: "
                              f"{str(exc)[:400]}") from exc


def load_components(path: Path, config_dir: Path, torch_dtype: Any) -> dict[str, Any]:
    """UNet, VAE, text encoder, tokenizer and scheduler from one LDM-layout checkpoint, with
    the configs and tokenizer of ``config_dir``; every module in ``torch_dtype``, on CPU."""
    return components_from_state(_use_ema(_read_tensors(path)), config_dir, torch_dtype)


def components_from_state(state: dict[str, Any], config_dir: Path,
                          torch_dtype: Any) -> dict[str, Any]:
    """The pipeline's components from LDM-keyed tensors (EMA already chosen), loaded strictly."""
    import diffusers
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import (
        convert_ldm_clip_checkpoint,
        convert_ldm_unet_checkpoint,
        convert_ldm_vae_checkpoint,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    def cfg(sub: str, name: str = "config.json") -> dict[str, Any]:
        return json.loads((config_dir / sub / name).read_text(encoding="utf-8"))

    with torch.device("meta"):  # no random init of ~1 B parameters: the checkpoint's are assigned
        unet = UNet2DConditionModel.from_config(cfg("unet"))
        vae = AutoencoderKL.from_config(cfg("vae"))
    _strict_load(unet, convert_ldm_unet_checkpoint(state, unet.config), "UNet")
    _strict_load(vae, convert_ldm_vae_checkpoint(state, vae.config), "VAE")
    text_encoder = CLIPTextModel(CLIPTextConfig.from_pretrained(
        str(config_dir / "text_encoder"), local_files_only=True))
    expected = set(text_encoder.state_dict())
    text_sd = {}
    for k, v in convert_ldm_clip_checkpoint(state).items():
        k = k if k in expected else k.removeprefix("text_model.")  # transformers >= 5.6 layout
        if k in expected or not k.endswith("position_ids"):  # old files store that buffer
            text_sd[k] = v
    _strict_load(text_encoder, text_sd, "text encoder")
    for m in (unet, vae, text_encoder):
        m.to(torch_dtype).eval()
    tokenizer = CLIPTokenizer.from_pretrained(str(config_dir / "tokenizer"), local_files_only=True)
    sched_cfg = cfg("scheduler", "scheduler_config.json")
    scheduler = getattr(diffusers, sched_cfg["_class_name"]).from_config(sched_cfg)
    return {"unet": unet, "vae": vae, "text_encoder": text_encoder, "tokenizer": tokenizer,
            "scheduler": scheduler}
