"""SD1.5 restorers on the tiny in-code pipeline: loader, identity, engine, grid == plain diffusers,
bf16 vs fp32, weight-path errors. The tiny model (64 px image -> 32x32 latent) runs in ms."""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionImg2ImgPipeline
from PIL import Image
from skimage import data
from skimage.metrics import peak_signal_noise_ratio

from review.media.restore import RestoreInput, WeightsError, generate_reference, get_restorer
from review.media.restore.sd15 import SD15Img2ImgParams
from review.media.restore.sd15_engine import (
    SCHEDULERS,
    RestoreCancelled,
    make_scheduler,
    restore_grid,
    working_size,
)
from review.media.restore.sd15_tiny import build_tiny_sd15
from review.media.restore.sd15_weights import (
    cpu_has_bf16,
    load_pipeline,
    model_identity,
    pick_precision,
    resolve_weights,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_fp32(models_dir: Path):
    return load_pipeline("tiny", models_dir=models_dir, precision="fp32")


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    # 48x32 px -> a 24x16 latent for the tiny model (its VAE downsamples by 2): fast on 2 cores
    return Image.fromarray(data.astronaut()).resize((48, 32), Image.Resampling.LANCZOS)


def _u8(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.int16)


def _plain_call(pipeline, image: Image.Image, p: SD15Img2ImgParams, strength: float,
                seed: int) -> Image.Image:
    """A plain diffusers call on the same components: the reference behaviour."""
    plain = StableDiffusionImg2ImgPipeline(**pipeline.pipe.components)
    plain.scheduler = make_scheduler(p.scheduler, pipeline.pipe.scheduler.config)
    plain.set_progress_bar_config(disable=True)
    return plain(p.prompt, image=image, strength=strength, num_inference_steps=p.steps,
                 guidance_scale=p.guidance_scale, negative_prompt=p.negative_prompt,
                 generator=torch.Generator("cpu").manual_seed(seed)).images[0]


# ----------------------------------------------------------------------------- end to end


def test_tiny_end_to_end(models_dir: Path) -> None:
    ref = Image.fromarray(data.astronaut()).resize((97, 61), Image.Resampling.LANCZOS)
    degraded = ref.filter(__import__("PIL.ImageFilter").ImageFilter.GaussianBlur(2))
    restorer = get_restorer("sd15_img2img", sd15_path="tiny", models_dir=models_dir)
    inp = RestoreInput(degraded, reference=ref)
    params = {"steps": 4, "strength": 0.5, "seed": 7, "precision": "fp32"}
    res = restorer.restore(inp, params)
    assert res.image.size == (97, 61) and res.image.mode == "RGB"
    prov = res.provenance
    assert prov["method"] == "sd15_img2img"
    assert prov["params"] == {**SD15Img2ImgParams().to_dict(), **params}
    assert prov["seed"] == 7
    assert prov["smoke_test"] is True and prov["model_identity"].startswith("tiny-")
    assert {"torch", "diffusers", "transformers", "numpy"} <= set(prov["versions"])
    assert prov["device"] == "cpu" and prov["dtype"] == "float32"
    assert prov["wall_time_s"] > 0 and prov["working_size"] == [96, 56]
    assert prov["denoising_steps"] == 2 and prov["scheduler_class"] == "DPMSolverMultistepScheduler"
    assert {"psnr", "ssim", "blur_effect_input", "blur_effect_output"} <= set(res.metrics)
    json.dumps(prov), json.dumps(res.metrics)  # storable as JSON

    same = restorer.restore(inp, params)
    assert np.array_equal(_u8(same.image), _u8(res.image))
    other = restorer.restore(inp, {**params, "seed": 8})
    assert np.abs(_u8(other.image) - _u8(res.image)).mean() > 5


def test_same_loader_for_tiny_and_folder(models_dir: Path, tmp_path: Path) -> None:
    """"tiny" is only a shortcut: the saved folder loads through the real-weights path, and the
    identity follows content, not location."""
    by_name = resolve_weights("tiny", models_dir=models_dir)
    by_path = resolve_weights(models_dir / "tiny_sd15")
    assert by_name.kind == by_path.kind == "folder" and by_path.smoke_test
    ident = model_identity(by_name)
    assert ident == model_identity(by_path)
    copy = tmp_path / "elsewhere"
    shutil.copytree(models_dir / "tiny_sd15", copy)
    assert model_identity(resolve_weights(copy)) == ident
    rebuilt = build_tiny_sd15(tmp_path / "rebuilt")  # deterministic recipe
    assert model_identity(resolve_weights(rebuilt)) == ident
    cfg = json.loads((copy / "scheduler" / "scheduler_config.json").read_text())
    cfg["beta_end"] = 0.013
    (copy / "scheduler" / "scheduler_config.json").write_text(json.dumps(cfg))
    assert model_identity(resolve_weights(copy)) != ident
    pipe = load_pipeline(models_dir / "tiny_sd15", precision="fp32")
    assert pipe.smoke_test and pipe.model_identity == ident
    assert os.environ["HF_HUB_OFFLINE"] == "1"  # set by the loader


def test_working_size() -> None:
    assert working_size((97, 61), 512) == (96, 56)
    assert working_size((4000, 3000), 512) == (512, 384)
    assert working_size((768, 1024), 512) == (384, 512)
    assert working_size((5, 700), 512) == (8, 512)


# ----------------------------------------------------------------------------- grid


@pytest.mark.parametrize("scheduler, strengths, seeds", [
    ("euler_a", [0.3, 0.7], [1, 2]),  # ancestral: fresh noise every step, per-variant streams
    ("ddim", [0.4, 0.8], [1]),  # with guidance_scale 1: no unconditional branch
    ("dpmpp_2m", [0.4, 0.8], [2]),  # multistep: per-strength scheduler history
])
def test_grid_equals_plain_diffusers_calls(tiny_fp32, photo: Image.Image, scheduler: str,
                                           strengths: list[float], seeds: list[int]) -> None:
    """Each grid variant equals diffusers' own pipeline called alone with the same seed."""
    p = SD15Img2ImgParams(steps=8, scheduler=scheduler, precision="fp32",
                          guidance_scale=1.0 if scheduler == "ddim" else 7.5)
    results = restore_grid(tiny_fp32, RestoreInput(photo), strengths, seeds, p)
    assert [(r.provenance["params"]["strength"], r.provenance["seed"]) for r in results] == [
        (s, seed) for s in strengths for seed in seeds]
    for r in results:
        plain = _plain_call(tiny_fp32, photo, p, r.provenance["params"]["strength"],
                            r.provenance["seed"])
        diff = np.abs(_u8(plain) - _u8(r.image))
        assert diff.max() <= 1, (scheduler, r.provenance["params"]["strength"], diff.max())
        assert diff.mean() < 0.02
    assert np.abs(_u8(results[0].image) - _u8(results[-1].image)).mean() > 5


def test_grid_shares_work(tiny_fp32, photo: Image.Image) -> None:
    """One VAE encode, one prompt encode, one UNet call per global step (batch = variants)."""
    calls = {"encoder": 0, "text": 0, "unet": []}
    pipe = tiny_fp32.pipe
    hooks = [
        pipe.vae.encoder.register_forward_hook(lambda *a: calls.__setitem__(
            "encoder", calls["encoder"] + 1)),
        pipe.text_encoder.register_forward_hook(lambda *a: calls.__setitem__(
            "text", calls["text"] + 1)),
        pipe.unet.register_forward_hook(lambda m, args, out: calls["unet"].append(
            args[0].shape[0])),
    ]
    try:
        p = SD15Img2ImgParams(steps=10, precision="fp32", max_batch=8)
        done: list[tuple[int, int]] = []
        restore_grid(tiny_fp32, RestoreInput(photo), [0.2, 0.5, 0.8], [0, 1],
                     p, progress=lambda d, t: done.append((d, t)))
    finally:
        for h in hooks:
            h.remove()
    assert calls["encoder"] == 1
    assert calls["text"] == 2  # prompt and negative prompt, once each
    # 8 global steps; 2, then 4, then 6 variants active; x2 for classifier-free guidance
    assert calls["unet"] == [4] * 3 + [8] * 3 + [12] * 2
    assert done[-1] == ((2 + 5 + 8) * 2, 30)


def test_single_restore_equals_grid_member(models_dir: Path, photo: Image.Image) -> None:
    restorer = get_restorer("sd15_img2img", sd15_path="tiny", models_dir=models_dir)
    p = {"steps": 8, "precision": "fp32", "scheduler": "euler_a"}
    grid = restorer.restore_grid(RestoreInput(photo), [0.5, 0.25], [3, 4], p)
    single = restorer.restore(RestoreInput(photo), {**p, "strength": 0.25, "seed": 4})
    assert np.abs(_u8(grid[3].image) - _u8(single.image)).max() <= 1


def test_bf16_close_to_fp32(models_dir: Path, photo: Image.Image) -> None:
    """Tolerance for running UNet+VAE in bf16 (latents and scheduler stay fp32): PSNR >= 30 dB
    against fp32 and max abs difference <= 16/255, default scheduler; measured here about
    47-53 dB and 2-5/255."""
    fp32 = load_pipeline("tiny", models_dir=models_dir, precision="fp32")
    bf16 = load_pipeline("tiny", models_dir=models_dir, precision="bf16")
    assert bf16.pipe.unet.dtype == torch.bfloat16 and bf16.pipe.vae.dtype == torch.bfloat16
    assert bf16.pipe.text_encoder.dtype == torch.float32
    p = SD15Img2ImgParams(steps=10)
    a = restore_grid(fp32, RestoreInput(photo), [0.3, 0.6], [0], p)
    b = restore_grid(bf16, RestoreInput(photo), [0.3, 0.6], [0], p)
    for x, y in zip(a, b, strict=True):
        assert y.provenance["dtype"] == "bfloat16"
        psnr = peak_signal_noise_ratio(_u8(x.image), _u8(y.image), data_range=255)
        assert psnr >= 30.0, psnr
        assert np.abs(_u8(x.image) - _u8(y.image)).max() <= 16


def test_precision_choice() -> None:
    assert pick_precision("auto", "cuda") == "fp16"
    assert pick_precision("auto", "cpu") == ("bf16" if cpu_has_bf16() else "fp32")
    assert pick_precision("fp32", "cpu") == "fp32"
    with pytest.raises(ValueError, match="needs a GPU"):
        pick_precision("fp16", "cpu")


def test_precision_mismatch_is_an_error(tiny_fp32, photo: Image.Image) -> None:
    with pytest.raises(ValueError, match="loaded in 'fp32'"):
        restore_grid(tiny_fp32, RestoreInput(photo), [0.5], [0],
                     SD15Img2ImgParams(precision="bf16"))


def test_schedulers_by_string(tiny_fp32) -> None:
    classes = {"ddim": "DDIMScheduler", "dpmpp_2m": "DPMSolverMultistepScheduler",
               "euler_a": "EulerAncestralDiscreteScheduler", "euler": "EulerDiscreteScheduler",
               "pndm": "PNDMScheduler", "lms": "LMSDiscreteScheduler"}
    assert set(SCHEDULERS) == set(classes)
    for name, cls in classes.items():
        s = make_scheduler(name, tiny_fp32.pipe.scheduler.config)
        assert type(s).__name__ == cls
    assert make_scheduler("dpmpp_2m", tiny_fp32.pipe.scheduler.config).config.algorithm_type \
        == "dpmsolver++"
    with pytest.raises(ValueError) as err:
        make_scheduler("karras", tiny_fp32.pipe.scheduler.config)
    assert all(n in str(err.value) for n in classes)


def test_lock_serialises_concurrent_runs(tiny_fp32, photo: Image.Image) -> None:
    p = SD15Img2ImgParams(steps=4, precision="fp32")
    expected = {s: restore_grid(tiny_fp32, RestoreInput(photo), [0.5], [s], p)[0] for s in (1, 2)}
    got: dict[int, Image.Image] = {}

    def run(seed: int) -> None:
        got[seed] = restore_grid(tiny_fp32, RestoreInput(photo), [0.5], [seed], p)[0].image

    threads = [threading.Thread(target=run, args=(s,)) for s in (1, 2, 1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in (1, 2):
        assert np.array_equal(_u8(got[s]), _u8(expected[s].image))


def test_cancel(tiny_fp32, photo: Image.Image) -> None:
    with pytest.raises(RestoreCancelled):
        restore_grid(tiny_fp32, RestoreInput(photo), [0.5], [0],
                     SD15Img2ImgParams(steps=10, precision="fp32"), cancel=lambda: True)
    assert not tiny_fp32.lock.locked()


def test_txt2img_reference(models_dir: Path) -> None:
    a = generate_reference("a portrait", 5, (64, 72), weights="tiny", models_dir=models_dir,
                           steps=3, precision="fp32")
    b = generate_reference("a portrait", 5, (64, 72), weights="tiny", models_dir=models_dir,
                           steps=3, precision="fp32")
    assert a.image.size == (64, 72)
    assert np.array_equal(_u8(a.image), _u8(b.image))
    assert a.provenance["method"] == "sd15_txt2img" and a.provenance["smoke_test"] is True
    assert a.provenance["params"]["prompt"] == "a portrait"
    with pytest.raises(ValueError, match="takes no degraded input"):
        get_restorer("sd15_txt2img", sd15_path="tiny", models_dir=models_dir).restore(
            RestoreInput(a.image))


# ----------------------------------------------------------------------------- weight errors


def _write(p: Path, text: str = "{}") -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


def _sd_index() -> str:
    return json.dumps({"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet"]})


def test_weights_not_set(photo: Image.Image) -> None:
    with pytest.raises(WeightsError, match="REVIEW_SD15_PATH is not set"):
        get_restorer("sd15_img2img").restore(RestoreInput(photo))


@pytest.mark.parametrize("case, words", [
    ("missing", ["does not exist", "model_index.json"]),
    ("empty_folder", ["no model_index.json"]),
    ("index_only", ["incomplete", "unet/config.json", "vae/config.json", "tokenizer/vocab.json"]),
    ("no_unet_weights", ["incomplete", "unet/*.safetensors"]),
    ("sdxl", ["StableDiffusionXLPipeline", "not supported"]),
    ("inpainting", ["9 input channels"]),
    ("single_unreadable", ["not a readable .safetensors file"]),
    ("wrong_suffix", [".txt file"]),
])
def test_weights_layout_errors(tmp_path: Path, models_dir: Path, case: str,
                               words: list[str]) -> None:
    tiny = models_dir / "tiny_sd15"
    target = tmp_path / "w"
    if case == "empty_folder":
        target.mkdir()
    elif case == "index_only":
        _write(target / "model_index.json", _sd_index())
    elif case in ("no_unet_weights", "sdxl", "inpainting"):
        shutil.copytree(tiny, target)
        if case == "no_unet_weights":
            (target / "unet" / "diffusion_pytorch_model.safetensors").unlink()
        elif case == "sdxl":
            _write(target / "model_index.json",
                   json.dumps({"_class_name": "StableDiffusionXLPipeline"}))
        else:
            cfg = json.loads((target / "unet" / "config.json").read_text())
            _write(target / "unet" / "config.json", json.dumps({**cfg, "in_channels": 9}))
    elif case == "single_unreadable":
        target.mkdir()
        target = target / "sd15.safetensors"
        target.write_bytes(b"\0" * 64)
    elif case == "wrong_suffix":
        target.mkdir()
        target = target / "weights.txt"
        target.write_text("x")
    with pytest.raises(WeightsError) as err:
        load_pipeline(target, precision="fp32")
    msg = str(err.value)
    assert "REVIEW_SD15_PATH" in msg
    for w in words:
        assert w in msg, (w, msg)


def test_corrupt_weights_are_a_weights_error(tmp_path: Path, models_dir: Path) -> None:
    target = tmp_path / "corrupt"
    shutil.copytree(models_dir / "tiny_sd15", target)
    (target / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(WeightsError, match="could not be loaded"):
        load_pipeline(target, precision="fp32")


def test_single_file_with_a_given_config_folder(tmp_path: Path, models_dir: Path,
                                                tiny_fp32) -> None:
    """A config folder passed as config_dir (or lying beside the file) replaces the built-in SD1.5
    configs; the checkpoint is still inspected, so a file that is not SD1.x is a WeightsError."""
    from safetensors.torch import save_file

    from tests.support_sd15 import pipeline_to_ldm, save_checkpoint

    cfg = tmp_path / "cfg"
    shutil.copytree(models_dir / "tiny_sd15", cfg,
                    ignore=shutil.ignore_patterns("*.safetensors"))
    ckpt = save_checkpoint(pipeline_to_ldm(tiny_fp32.pipe), tmp_path / "m.safetensors", tiny=False)
    src = resolve_weights(ckpt, config_dir=cfg)
    assert src.kind == "single_file" and src.config_dir == cfg.resolve()
    assert model_identity(src).startswith("sd15-")
    loaded = load_pipeline(ckpt, config_dir=cfg, precision="fp32")
    assert torch.equal(loaded.pipe.unet.conv_in.weight, tiny_fp32.pipe.unet.conv_in.weight)
    bad = tmp_path / "bad.safetensors"
    save_file({"foo.weight": torch.zeros(2, 2)}, str(bad))
    with pytest.raises(WeightsError, match="no Stable Diffusion UNet"):
        load_pipeline(bad, config_dir=cfg, precision="fp32")


def test_grid_rejects_repeated_variants(tiny_fp32, photo: Image.Image) -> None:
    with pytest.raises(ValueError, match="repeated values"):
        restore_grid(tiny_fp32, RestoreInput(photo), [0.5, 0.5], [0],
                     SD15Img2ImgParams(precision="fp32"))


# ----------------------------------------------------------------------------- content identity

_MIB = 1 << 20


def _rewrite_middle(f: Path, seed: int) -> list[str]:
    """Change, in place, every float32 tensor of a .safetensors file that lies more than 2 MiB
    from either end: same name, same size, same first and last MiB, other weights (a merge
    saved over the old file). Returns the tensors changed."""
    import struct

    raw = f.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    base, size = 8 + n, len(raw)
    rng = np.random.default_rng(seed)
    changed = []
    with f.open("r+b") as fh:
        for name, info in header.items():
            if name == "__metadata__" or info["dtype"] != "F32":
                continue
            start, end = (base + o for o in info["data_offsets"])
            if start < 2 * _MIB or end > size - 2 * _MIB:
                continue
            values = np.frombuffer(raw[start:end], dtype="<f4")
            fh.seek(start)
            fh.write((values + rng.normal(0, 0.05, values.shape)).astype("<f4").tobytes())
            changed.append(name)
    assert f.stat().st_size == size
    return changed


def test_identity_is_a_hash_of_the_whole_content(tmp_path: Path, monkeypatch) -> None:
    """Same name, same size, same first and last MiB, other bytes in the middle: another
    identity. Replaced in place (even with the old mtime put back): another identity. The
    hashes are kept in the models folder, so another process does not read the file again."""
    from review.media.restore import sd15_weights as w

    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "model_index.json").write_text("{}")
    body = np.random.default_rng(0).integers(0, 256, 5 * _MIB, dtype=np.uint8)
    paths = []
    for folder, value in (("a", 1), ("b", 2)):
        data = body.copy()
        data[5 * _MIB // 2] = value  # one byte in the middle differs
        (tmp_path / folder).mkdir()
        paths.append(tmp_path / folder / "merged.safetensors")
        paths[-1].write_bytes(data.tobytes())
    a, b = (w.WeightsSource("single_file", p, cfg) for p in paths)
    models = tmp_path / "models"
    ident_a = w.model_identity(a, cache_dir=models)
    assert ident_a.startswith("sd15-") and len(ident_a) == len("sd15-") + 64
    assert w.model_identity(b, cache_dir=models) != ident_a
    assert w.file_sha256(paths[0]) == __import__("hashlib").sha256(paths[0].read_bytes()).hexdigest()

    # a fresh process (caches emptied) takes the hash from the models folder's sidecar
    monkeypatch.setattr(w, "_file_hashes", {})
    monkeypatch.setattr(w, "_identity_cache", {})

    def no_reading(f: Path) -> str:
        raise AssertionError(f"{f} was hashed again")

    monkeypatch.setattr(w, "_sha256_file", no_reading)
    assert w.model_identity(a, cache_dir=models) == ident_a
    monkeypatch.undo()

    # replaced in place, old mtime put back: the ctime moved, so it is hashed again
    st = paths[0].stat()
    data = body.copy()
    data[5 * _MIB // 2] = 2
    with paths[0].open("r+b") as fh:
        fh.write(data.tobytes())
    os.utime(paths[0], ns=(st.st_atime_ns, st.st_mtime_ns))
    assert w.model_identity(a, cache_dir=models) == w.model_identity(b, cache_dir=models) != ident_a


def test_weights_replaced_in_place_are_loaded_again(models_dir: Path, tmp_path: Path,
                                                    photo: Image.Image) -> None:
    """A running app or worker keeps loaded pipelines by content identity: the UNet file
    overwritten with other weights of the same size (first and last MiB unchanged) is loaded
    again, and its restorations say so."""
    from safetensors.torch import load_file

    folder = tmp_path / "weights"
    shutil.copytree(models_dir / "tiny_sd15", folder)
    first = load_pipeline(folder, precision="fp32")
    assert load_pipeline(folder, precision="fp32") is first
    unet_file = folder / "unet" / "diffusion_pytorch_model.safetensors"
    changed = _rewrite_middle(unet_file, seed=1)
    assert changed
    second = load_pipeline(folder, precision="fp32")
    assert second is not first and second.model_identity != first.model_identity
    from review.media.restore.sd15_weights import _pipelines

    assert first not in _pipelines.values()  # the replaced content's pipeline is let go
    new = load_file(str(unet_file))
    name = changed[0]
    assert torch.equal(second.pipe.unet.state_dict()[name], new[name])
    # (the first pipeline's tensors may be memory-mapped from the file, so they are not compared)
    p = SD15Img2ImgParams(steps=4, strength=0.5, precision="fp32")
    out = restore_grid(second, RestoreInput(photo), [0.5], [0], p)[0]
    assert out.provenance["model_identity"] == second.model_identity


def test_scheduler_configuration_is_in_provenance(models_dir: Path, tmp_path: Path,
                                                  photo: Image.Image) -> None:
    """Timestep spacing changes the output, so it is recorded (with the rest of the scheduler's
    effective configuration and the timesteps run), and weights whose scheduler config says
    otherwise have another identity."""
    folder = tmp_path / "trailing"
    shutil.copytree(models_dir / "tiny_sd15", folder)
    cfg_file = folder / "scheduler" / "scheduler_config.json"
    cfg = json.loads(cfg_file.read_text())
    assert cfg["timestep_spacing"] == "leading"
    cfg_file.write_text(json.dumps({**cfg, "timestep_spacing": "trailing"}))
    p = SD15Img2ImgParams(steps=6, strength=0.5, precision="fp32", scheduler="euler")
    runs = {}
    for name, path in (("leading", models_dir / "tiny_sd15"), ("trailing", folder)):
        runs[name] = restore_grid(load_pipeline(path, precision="fp32"), RestoreInput(photo),
                                  [0.5], [0], p)[0]
    provs = {n: r.provenance for n, r in runs.items()}
    for name, prov in provs.items():
        assert prov["timestep_spacing"] == name
        assert prov["scheduler_config"]["timestep_spacing"] == name
        assert prov["scheduler_config"]["steps_offset"] == 1
        assert prov["scheduler_config"]["beta_schedule"] == "scaled_linear"
        assert len(prov["timesteps"]) == prov["denoising_steps"] == 3
        json.dumps(prov, allow_nan=False)  # storable in PostgreSQL's JSON too
    assert provs["leading"]["timesteps"] != provs["trailing"]["timesteps"]
    assert provs["leading"]["model_identity"] != provs["trailing"]["model_identity"]
    assert not np.array_equal(_u8(runs["leading"].image), _u8(runs["trailing"].image))
