"""Single-file SD1.5 checkpoints (original CompVis layout) loaded offline by path alone: the tiny
model saved as .safetensors / .ckpt gives the same images as its diffusers folder; the built-in
SD1.5 configs and CLIP tokenizer; refusal of other model families and of unsafe pickles; the
restore CLI's stderr and same-seed reproducibility across fresh processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from review.media.restore import RestoreInput, WeightsError
from review.media.restore import sd15_checkpoint as ckpt_mod
from review.media.restore.sd15 import SD15Img2ImgParams
from review.media.restore.sd15_checkpoint import (
    SD15_TEXT_ENCODER,
    CheckpointError,
    components_from_state,
    sd15_config_folder,
)
from review.media.restore.sd15_engine import restore_grid
from review.media.restore.sd15_tiny import sd15_sized_components
from review.media.restore.sd15_weights import load_pipeline, resolve_weights
from tests.support_sd15 import pipeline_to_ldm, save_checkpoint, with_ema

ROOT = Path(__file__).resolve().parent.parent


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def folder_pipe(models_dir: Path):
    return load_pipeline(models_dir / "tiny_sd15", precision="fp32")


@pytest.fixture(scope="module")
def ldm_state(folder_pipe) -> dict[str, torch.Tensor]:
    return pipeline_to_ldm(folder_pipe.pipe)


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return Image.fromarray(data.astronaut()).resize((48, 32), Image.Resampling.LANCZOS)


def _images(pipeline, photo: Image.Image) -> list[np.ndarray]:
    p = SD15Img2ImgParams(steps=6, precision="fp32", scheduler="euler_a")
    return [np.asarray(r.image) for r in restore_grid(pipeline, RestoreInput(photo), [0.5, 1.0],
                                                      [3], p)]


# ----------------------------------------------------------------------------- same images


@pytest.mark.parametrize("suffix", [".safetensors", ".ckpt"])
def test_single_file_gives_the_folders_images(tmp_path: Path, models_dir: Path, folder_pipe,
                                              ldm_state, photo: Image.Image, suffix: str) -> None:
    path = save_checkpoint(ldm_state, tmp_path / f"tiny{suffix}")
    assert list(tmp_path.iterdir()) == [path]  # nothing beside it
    single = load_pipeline(path, models_dir=models_dir, precision="fp32")
    assert single.source.kind == "single_file" and single.smoke_test
    assert single.model_identity.startswith("tiny-")
    assert single.source.checkpoint.ema == "ema-only"
    for a, b in zip(_images(folder_pipe, photo), _images(single, photo), strict=True):
        assert np.array_equal(a, b)


def test_full_checkpoint_samples_with_the_ema_weights(tmp_path: Path, models_dir: Path,
                                                      folder_pipe, ldm_state,
                                                      photo: Image.Image) -> None:
    """EMA + non-EMA: the EMA copy (here the folder's weights) is used, not the training one."""
    unet = {k: v for k, v in ldm_state.items() if k.startswith("model.diffusion_model.")}
    training = {**ldm_state, **{k: v + 0.05 for k, v in unet.items()}}
    path = save_checkpoint(with_ema(training, unet), tmp_path / "full.ckpt")
    single = load_pipeline(path, models_dir=models_dir, precision="fp32")
    assert single.source.checkpoint.ema == "ema+non-ema"
    for a, b in zip(_images(folder_pipe, photo), _images(single, photo), strict=True):
        assert np.array_equal(a, b)


def test_fp16_checkpoint_loads(tmp_path: Path, models_dir: Path, folder_pipe, ldm_state,
                               photo: Image.Image) -> None:
    half = {k: v.half() if v.is_floating_point() else v for k, v in ldm_state.items()}
    path = save_checkpoint(half, tmp_path / "half.safetensors")
    single = load_pipeline(path, models_dir=models_dir, precision="fp32")
    assert single.source.checkpoint.dtypes == ("float16", "int64")
    w = single.pipe.unet.conv_in.weight
    assert w.dtype == torch.float32
    assert torch.equal(w, folder_pipe.pipe.unet.conv_in.weight.half().float())
    for a, b in zip(_images(folder_pipe, photo), _images(single, photo), strict=True):
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 8


# ----------------------------------------------------------------------------- SD1.5 constants


def test_clip_tokenizer_matches_published_token_ids(tmp_path: Path) -> None:
    """Built from open_clip's BPE merges; ids as published for OpenAI CLIP's tokenizer."""
    from transformers import CLIPTokenizer

    folder = sd15_config_folder(tmp_path / "sd15_config")
    tok = CLIPTokenizer.from_pretrained(str(folder / "tokenizer"), local_files_only=True)
    assert len(tok) == SD15_TEXT_ENCODER["vocab_size"] == 49408
    assert tok.model_max_length == 77 and tok.pad_token_id == 49407
    published = {
        "a photo of a cat": [49406, 320, 1125, 539, 320, 2368, 49407],
        "a photo of a dog": [49406, 320, 1125, 539, 320, 1929, 49407],
        "2 dogs and 3 cats": [49406, 273, 3255, 537, 274, 3989, 49407],
        "A Photo of a TREE!": [49406, 320, 1125, 539, 320, 2677, 256, 49407],
        "person working at a computer": [49406, 2533, 1699, 536, 320, 11639, 652, 49407],
    }
    for text, ids in published.items():
        assert tok(text).input_ids == ids, text


def test_sd15_sized_checkpoint_fits_the_builtin_configs(tmp_path: Path) -> None:
    """Real SD1.5 sizes, without gigabytes: an LDM-keyed state dict of meta tensors (from
    SD1.5-sized modules) is classified as SD1.5 and loads strictly into the constant configs."""
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.device("meta"):
        comps = sd15_sized_components(tmp_path / "tok")
        comps["text_encoder"] = CLIPTextModel(CLIPTextConfig(**SD15_TEXT_ENCODER))  # full vocab
    pipe = type("P", (), comps)
    state = pipeline_to_ldm(pipe)
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    assert ckpt_mod.classify(shapes) == "ema-only"
    assert shapes["model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"] \
        == (320, 768)
    loaded = components_from_state(state, sd15_config_folder(tmp_path / "cfg"), torch.float32)
    counts = {n: sum(p.numel() for p in loaded[n].parameters())
              for n in ("unet", "vae", "text_encoder")}
    assert counts == {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480}
    assert type(loaded["scheduler"]).__name__ == "PNDMScheduler"


def test_missing_bpe_file_names_the_package(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ckpt_mod.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(CheckpointError, match="pip install --no-deps open-clip-torch"):
        sd15_config_folder(tmp_path / "cfg")


# ----------------------------------------------------------------------------- refusals


class _Evil:
    def __reduce__(self):  # noqa: ANN204
        return (os.system, ("echo pwned",))


def _sd_like(**overrides: torch.Tensor) -> dict[str, torch.Tensor]:
    """A small synthetic state dict with SD1.5's key layout and defining shapes."""
    z = torch.zeros
    base = {
        "model.diffusion_model.input_blocks.0.0.weight": z(320, 4, 3, 3),
        "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight":
            z(320, 768),
        "first_stage_model.encoder.conv_in.weight": z(128, 3, 3, 3),
        "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": z(8, 768),
    }
    return {**base, **overrides}


REFUSALS = {
    "sd2": (_sd_like(**{
        "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight":
            torch.zeros(320, 1024),
        "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight": torch.zeros(3, 4)}),
        ["Stable Diffusion 2.x", "OpenCLIP", "1024"]),
    "sdxl": ({"conditioner.embedders.0.transformer.text_model.x": torch.zeros(2),
              "model.diffusion_model.input_blocks.0.0.weight": torch.zeros(320, 4, 3, 3)},
             ["SDXL", "conditioner.embedders"]),
    "inpainting": (_sd_like(**{"model.diffusion_model.input_blocks.0.0.weight":
                               torch.zeros(320, 9, 3, 3)}), ["inpainting", "9 input channels"]),
    "lora": ({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 320),
              "lora_te_text_model_encoder_layers_0_mlp_fc1.alpha": torch.tensor(4.0)},
             ["LoRA", "not a full model"]),
    "unet_only": ({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(320, 4, 3, 3)},
                  ["no VAE"]),
    "not_sd15_sized": (_sd_like(**{"model.diffusion_model.input_blocks.0.0.weight":
                                   torch.zeros(32, 4, 3, 3)}), ["not SD1.x-sized"]),
    "other": ({"foo.weight": torch.zeros(2, 2)}, ["no Stable Diffusion UNet"]),
}


@pytest.mark.parametrize("suffix", [".safetensors", ".ckpt"])
@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_other_model_families_are_refused(tmp_path: Path, case: str, suffix: str) -> None:
    state, words = REFUSALS[case]
    path = save_checkpoint(state, tmp_path / f"{case}{suffix}", tiny=False)
    with pytest.raises(WeightsError) as err:
        resolve_weights(path, models_dir=tmp_path)
    msg = str(err.value)
    assert "REVIEW_SD15_PATH" in msg and path.name in msg
    for w in words:
        assert w in msg, (w, msg)
    assert not (tmp_path / "sd15_config").exists()  # refused before anything was written


def test_pickle_needing_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": _sd_like(), "callbacks": _Evil()}, path)
    with pytest.raises(WeightsError, match="needs arbitrary Python code") as err:
        resolve_weights(path, models_dir=tmp_path)
    msg = str(err.value)
    assert f"({os.system.__module__}.system)" in msg  # names what it would run
    assert msg.endswith("convert this file with a tool you trust.")  # a whole sentence


def test_lightning_training_metadata_is_read_as_data(tmp_path: Path, monkeypatch) -> None:
    """A checkpoint saved by a PyTorch Lightning training run (as the SD1.5 release's .ckpt files
    were) names the ModelCheckpoint callback class and holds numpy scalars, bytes and sets: read
    as inert data, as ComfyUI and AUTOMATIC1111 do, without pytorch_lightning installed. A
    malicious global in the same place is still refused."""
    import collections
    import sys
    import types

    names = ("pytorch_lightning", "pytorch_lightning.callbacks",
             "pytorch_lightning.callbacks.model_checkpoint")
    for name in names:  # only to write the pickle with Lightning's global names
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    callback = type("ModelCheckpoint", (), {"__module__": names[-1]})
    sys.modules[names[-1]].ModelCheckpoint = callback
    path = tmp_path / "trained.ckpt"
    torch.save({"state_dict": _sd_like(), "epoch": 6, "global_step": 840000,
                "pytorch-lightning_version": "1.4.2",
                "callbacks": {callback: {"monitor": "val/loss", "best_model_score": np.float64(0.25),
                                         "best_model_path": "logs/last.ckpt",
                                         "dirpath": b"logs", "tags": {"ema", "v1"}}},
                "lr": np.float32(1e-4), "hparams": collections.OrderedDict(lr=1e-4)}, path)
    for name in names:
        monkeypatch.delitem(sys.modules, name)
    loaded = ckpt_mod._load_ckpt(path)
    (key, state), = loaded["callbacks"].items()
    assert key is ckpt_mod.LightningCallback and "pytorch_lightning" not in sys.modules
    assert state["best_model_score"] == 0.25 and state["dirpath"] == b"logs"
    assert state["tags"] == {"ema", "v1"} and abs(loaded["lr"] - 1e-4) < 1e-9
    assert resolve_weights(path, models_dir=tmp_path).checkpoint.family == "sd15"

    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": _sd_like(), "epoch": np.float64(1.0),
                "callbacks": {"ModelCheckpoint": _Evil()}}, evil)
    with pytest.raises(WeightsError, match="needs arbitrary Python code"):
        resolve_weights(evil, models_dir=tmp_path)


def test_unreadable_files_are_refused(tmp_path: Path) -> None:
    for name in ("junk.safetensors", "junk.ckpt"):
        (tmp_path / name).write_bytes(b"\0" * 64)
        with pytest.raises(WeightsError, match="not a readable"):
            resolve_weights(tmp_path / name, models_dir=tmp_path)


# ----------------------------------------------------------------------------- several models


def test_models_folder_side_by_side(tmp_path: Path, models_dir: Path, ldm_state,
                                    photo: Image.Image) -> None:
    """A folder of checkpoints (and diffusers folders): each is its own model, by name, with
    its own content identity; several paths joined by os.pathsep work the same way."""
    import shutil

    from review.config import Settings
    from review.media.restore import list_models
    from review.media.restore.runner import run_restorer

    lib = tmp_path / "models"
    lib.mkdir()
    save_checkpoint(ldm_state, lib / "base.safetensors")
    tuned = {k: v + 0.02 if k.startswith("model.diffusion_model.") else v
             for k, v in ldm_state.items()}
    save_checkpoint(tuned, lib / "finetune.ckpt")
    shutil.copytree(models_dir / "tiny_sd15", lib / "diffusers-copy")
    (lib / "notes.txt").write_text("not a model")
    (lib / ".partial.safetensors").write_bytes(b"")
    assert list_models(lib) == {"base": lib / "base.safetensors",
                                "diffusers-copy": lib / "diffusers-copy",
                                "finetune": lib / "finetune.ckpt"}
    with pytest.raises(WeightsError, match=r"names 3 models \(base, diffusers-copy, finetune\)"):
        resolve_weights(lib, models_dir=models_dir)
    joined = os.pathsep.join([str(lib / "base.safetensors"), str(lib / "finetune.ckpt")])
    assert list(list_models(joined)) == ["base", "finetune"]
    save_checkpoint(ldm_state, lib / "base.ckpt")
    clashing = list_models(lib)  # same stem: both keep their suffix
    assert (clashing["base.ckpt"], clashing["base.safetensors"]) == (lib / "base.ckpt",
                                                                    lib / "base.safetensors")
    (lib / "base.ckpt").unlink()

    settings = Settings(data_dir=models_dir.parent, database_url=None, sd15_path=lib)
    params = {"steps": 4, "strength": 0.5, "seed": 1, "precision": "fp32"}
    runs = {name: run_restorer("sd15_img2img", photo, params=params, model=name,
                               settings=settings) for name in ("base", "finetune")}
    provs = {n: r.provenance for n, r in runs.items()}
    assert [provs[n]["model_name"] for n in runs] == ["base", "finetune"]
    assert provs["base"]["model_identity"] != provs["finetune"]["model_identity"]
    assert not np.array_equal(np.asarray(runs["base"].image), np.asarray(runs["finetune"].image))
    with pytest.raises(WeightsError, match="neither a model of REVIEW_SD15_PATH"):
        run_restorer("sd15_img2img", photo, params=params, model="nope", settings=settings)


def test_generate_page_lists_the_models(lab, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from review.labeling.study import StudyConfig, ensure_study
    from review.media import catalog
    from tests.support_app import page_app, page_user

    lib = tmp_path / "models"
    lib.mkdir()
    for name in ("sd15-base.safetensors", "portrait-finetune.ckpt"):
        (lib / name).write_bytes(b"")  # listing reads nothing
    monkeypatch.setenv("REVIEW_SD15_PATH", str(lib))
    with lab.sessions() as s, s.begin():
        catalog.add_source(s, lab.store, Image.fromarray(data.astronaut()), title="a",
                           content="object")
        ensure_study(s, StudyConfig(name="gen"), None)
    at = page_app("generate_page", page_user("admin")).run()
    assert not at.exception, at.exception
    radio = next(r for r in at.radio if r.label == "SD1.5 model")
    assert list(radio.options) == ["portrait-finetune", "sd15-base",
                                   "tiny (smoke test, not a restoration)"]
    assert any("2 models: portrait-finetune, sd15-base" in c.value for c in at.caption)


# ----------------------------------------------------------------------------- CLI


def _cli(data_dir: Path, src: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "REVIEW_DATA_DIR": str(data_dir)}
    env.pop("REVIEW_SD15_PATH", None)
    return subprocess.Popen(
        [sys.executable, "-m", "review", "restore", str(src), str(out), "--method",
         "sd15_img2img", "--model", "tiny", "--strength", "0.3", "--seed", "1", "--steps", "10"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_restore_cli_is_quiet_and_same_seed_gives_same_bytes(tmp_path: Path) -> None:
    """Fresh data folder: the first run builds the tiny model, the second only loads it. No
    third-party warnings or progress bars on stderr; byte-identical outputs."""
    src = tmp_path / "in.png"
    Image.fromarray(data.astronaut()).resize((96, 64)).save(src)
    outs = [tmp_path / f"out{i}.png" for i in range(2)]
    for out in outs:
        stdout, stderr = _cli(tmp_path / "data", src, out).communicate(timeout=300)
        assert stderr == "", stderr
        prov = json.loads(stdout)["provenance"]
        assert prov["model_name"] == "tiny" and prov["cpu_threads"] >= 1
        assert "cpu_threads" in prov["reproducibility"]
    assert outs[0].read_bytes() == outs[1].read_bytes()
