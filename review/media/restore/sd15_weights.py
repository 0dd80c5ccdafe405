"""Loading Stable Diffusion 1.5 weights from local files only, and naming them by content.

Accepted layouts for the path the caller takes from ``REVIEW_SD15_PATH``:

* a diffusers folder: ``model_index.json`` plus ``unet/``, ``vae/``, ``text_encoder/`` (each
  ``config.json`` and weights ``*.safetensors`` or ``*.bin``), ``tokenizer/`` (``vocab.json`` +
  ``merges.txt`` or ``tokenizer.json``) and ``scheduler/scheduler_config.json``;
* a single ``.safetensors`` / ``.ckpt`` checkpoint in the original CompVis/LDM key layout (as
  the SD1.5 release ships it), alone: the SD1.5 configs and CLIP tokenizer are written from
  constants into ``models_dir/sd15_config`` (see :mod:`sd15_checkpoint`). A diffusers *config*
  folder given as ``config_dir``, or lying beside the checkpoint (``model_index.json``), is used
  instead when present. The file is inspected first (``.ckpt`` only through
  ``torch.load(weights_only=True)``) and other model families are refused;
* a *models folder* holding several of the above (checkpoint files and/or diffusers folders), or
  several paths joined by ``os.pathsep``: :func:`list_models` names each one (file stem or folder
  name) and the caller picks one by name; a single model there is used directly;
* the special value ``"tiny"``: the in-code smoke-test pipeline of :mod:`sd15_tiny`, built once
  under ``models_dir/tiny_sd15`` and then loaded through exactly the same code as real weights.

Everything is loaded with ``local_files_only=True`` and ``HF_HUB_OFFLINE=1``, without a safety
checker. Missing, partial or incompatible weights raise :class:`WeightsError` naming
``REVIEW_SD15_PATH`` and the expected layout.

The model identity is a SHA-256 of the weights' whole content (every weight and config file),
not of the path, so the same weights copied elsewhere keep their identity and changed weights
get a new one. Each file is hashed once per (path, size, mtime, ctime), in the process and in
``<models_dir>/.weights-sha256.json`` for other processes; loaded pipelines are kept by identity,
so weights replaced in place are loaded again.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from review.errors import ReviewError, regular_file_problem
from review.media.restore.sd15_checkpoint import (
    CheckpointError,
    CheckpointInfo,
    inspect_checkpoint,
    load_components,
    sd15_config_folder,
)
from review.media.restore.sd15_tiny import MARKER, build_tiny_sd15

SETTING = "REVIEW_SD15_PATH"
TINY = "tiny"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth")
CONFIG_SUFFIXES = (".json", ".txt")
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")
PIPELINE_CLASSES = ("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline")
_MIB = 1 << 20

LAYOUT_HELP = (
    f"{SETTING} must point to local Stable Diffusion 1.5 weights: either a diffusers folder "
    "(model_index.json, unet/, vae/, text_encoder/ with config.json and *.safetensors or *.bin, "
    "tokenizer/ with vocab.json + merges.txt, scheduler/scheduler_config.json), or a single "
    "SD1.5 .safetensors/.ckpt checkpoint in the original (CompVis) layout, such as "
    "v1-5-pruned-emaonly.safetensors (nothing else needed beside it), a folder of such models, "
    f"or '{TINY}' for the built-in smoke-test model. Nothing is ever downloaded."
)


class WeightsError(ReviewError):
    """The SD1.5 weights are missing, incomplete or not an SD1.5 pipeline."""


# ----------------------------------------------------------------------------- resolving


@dataclass(frozen=True)
class WeightsSource:
    """Where the weights are: a diffusers folder, or a single file with its config folder."""

    kind: str  # "folder" | "single_file" | "in_memory" (benchmarks)
    path: Path
    config_dir: Path | None = None
    smoke_test: bool = False
    checkpoint: CheckpointInfo | None = None  # single files: what inspection found


def resolve_weights(
    path: Path | str | None, *, models_dir: Path | None = None, config_dir: Path | None = None
) -> WeightsSource:
    """Check the layout without importing torch; build the tiny model for ``"tiny"``."""
    if path is None or str(path).strip() == "":
        raise WeightsError(f"{SETTING} is not set, so SD1.5 restorers are unavailable. "
                           + LAYOUT_HELP)
    if str(path) == TINY:
        if models_dir is None:
            raise WeightsError(f"{SETTING}={TINY} needs a models folder to build into")
        folder = build_tiny_sd15(Path(models_dir) / "tiny_sd15")
        _check_folder(folder, need_weights=True)
        return WeightsSource("folder", folder.resolve(), smoke_test=True)
    models = list_models(path)
    if len(models) > 1:
        raise WeightsError(f"{SETTING}={path} names {len(models)} models "
                           f"({', '.join(models)}): choose one by name (restore --model NAME, or "
                           "the Generate page's model choice)")
    p = next(iter(models.values())) if models else Path(path).expanduser()
    if not p.exists():
        raise WeightsError(f"{SETTING}={p} does not exist. " + LAYOUT_HELP)
    if p.is_dir():
        _check_folder(p, need_weights=True)
        return WeightsSource("folder", p.resolve(), smoke_test=(p / MARKER).is_file())
    problem = regular_file_problem(p)  # before anything opens it: reading a FIFO waits forever
    if problem is not None:
        raise WeightsError(f"{SETTING}: {problem}. Point it at the checkpoint file itself or at "
                           "a diffusers folder. " + LAYOUT_HELP)
    if p.suffix.lower() not in SINGLE_FILE_SUFFIXES:
        raise WeightsError(f"{SETTING}={p} is a {p.suffix or 'suffix-less'} file; expected a "
                           "folder or a .safetensors/.ckpt checkpoint. " + LAYOUT_HELP)
    try:
        given = config_dir is not None or (p.parent / "model_index.json").is_file()
        info = _inspect(p, sd15_sizes=not given)  # given configs define the sizes
        if given:
            cfg = Path(config_dir) if config_dir is not None else p.parent
            _check_folder(cfg, need_weights=False)
        elif info.family == "tiny":
            if models_dir is None:
                raise WeightsError(f"{SETTING}={p} is the tiny smoke-test model, whose configs "
                                   "are built in a models folder: none was given")
            cfg = build_tiny_sd15(Path(models_dir) / "tiny_sd15")
        else:
            cfg = sd15_config_folder(_config_home(models_dir) / "sd15_config")
    except CheckpointError as exc:
        raise WeightsError(f"{SETTING}={p}: {exc}") from exc
    return WeightsSource("single_file", p.resolve(), cfg.resolve(),
                         smoke_test=info.family == "tiny", checkpoint=info)


def _is_model(p: Path) -> bool:
    return (p.is_file() and p.suffix.lower() in SINGLE_FILE_SUFFIXES
            or (p / "model_index.json").is_file())


def list_models(setting: Path | str | None) -> dict[str, Path]:
    """Readable name -> weights path for every SD1.5 model that ``REVIEW_SD15_PATH`` names: one
    model, a models folder (each checkpoint file or diffusers folder in it), or several such paths
    joined by ``os.pathsep``. Names are file stems / folder names; stems that clash keep their
    suffix (then the parent folder, then a number); ``tiny`` is reserved for the smoke-test
    model. Cheap: nothing is read."""
    if setting is None or not str(setting).strip() or str(setting) == TINY:
        return {}
    found: list[Path] = []
    for part in (s.strip() for s in str(setting).split(os.pathsep)):
        if not part:
            continue
        p = Path(part).expanduser()
        if p.is_dir() and not (p / "model_index.json").is_file():
            found += [c for c in sorted(p.iterdir()) if not c.name.startswith(".") and _is_model(c)]
        else:
            found.append(p)

    def short(p: Path) -> str:
        return p.stem if p.suffix.lower() in SINGLE_FILE_SUFFIXES else p.name

    stems = [short(p) for p in found]
    names: dict[str, Path] = {}
    for p, stem in zip(found, stems, strict=True):
        first = stem if stems.count(stem) == 1 and stem != TINY else p.name
        for candidate in (first, f"{p.parent.name}/{p.name}",
                          *(f"{p.name}-{i}" for i in range(2, len(found) + 2))):
            if candidate not in names and candidate != TINY:
                names[candidate] = p
                break
    return names


def model_name(src: WeightsSource) -> str:
    """The readable name :func:`list_models` gives these weights (``tiny`` for the smoke test
    model built in code)."""
    if src.kind == "folder" and (src.path / MARKER).is_file():
        return TINY
    return src.path.stem if src.kind == "single_file" else src.path.name


_inspected: dict[tuple, CheckpointInfo] = {}
_scratch: list[Path] = []


def _inspect(p: Path, *, sd15_sizes: bool) -> CheckpointInfo:
    """inspect_checkpoint, cached per (path, size, mtime, ctime): a .ckpt has to be unpickled."""
    key = (*_stat_key(p), sd15_sizes)
    with _identity_lock:
        if key in _inspected:
            return _inspected[key]
    info = inspect_checkpoint(p, sd15_sizes=sd15_sizes)
    with _identity_lock:
        _inspected[key] = info
    return info


def _config_home(models_dir: Path | None) -> Path:
    """Where generated configs go: the models folder, else a private folder for this process."""
    if models_dir is not None:
        return Path(models_dir)
    if not _scratch:
        _scratch.append(Path(tempfile.mkdtemp(prefix="review-sd15-")))
    return _scratch[0]


def _check_folder(folder: Path, *, need_weights: bool) -> None:
    """Raise WeightsError listing what is missing from a diffusers folder."""
    index_file = folder / "model_index.json"
    if not index_file.is_file():
        raise WeightsError(f"{SETTING}={folder}: no model_index.json, so this is not a "
                           "diffusers folder. " + LAYOUT_HELP)
    try:
        index = json.loads(index_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise WeightsError(f"{SETTING}={folder}: model_index.json is unreadable ({exc}). "
                           + LAYOUT_HELP) from exc
    cls = index.get("_class_name") if isinstance(index, dict) else None
    if cls not in PIPELINE_CLASSES:
        raise WeightsError(
            f"{SETTING}={folder}: model_index.json describes {cls!r}, not a Stable Diffusion "
            f"1.x pipeline ({' or '.join(PIPELINE_CLASSES)}); SDXL, SD3, Flux and other "
            "families are not supported."
        )
    missing: list[str] = []
    for sub in ("unet", "vae", "text_encoder"):
        d = folder / sub
        if not (d / "config.json").is_file():
            missing.append(f"{sub}/config.json")
        if need_weights and not any(f.suffix in WEIGHT_SUFFIXES for f in _files(d)):
            missing.append(f"{sub}/*.safetensors (or *.bin)")
    tok = folder / "tokenizer"
    if not ((tok / "vocab.json").is_file() and (tok / "merges.txt").is_file()
            or (tok / "tokenizer.json").is_file()):
        missing.append("tokenizer/vocab.json + tokenizer/merges.txt (or tokenizer.json)")
    if not (folder / "scheduler" / "scheduler_config.json").is_file():
        missing.append("scheduler/scheduler_config.json")
    if missing:
        raise WeightsError(f"{SETTING}={folder} is incomplete; missing: {', '.join(missing)}. "
                           + LAYOUT_HELP)
    unet_cfg = _read_json(folder / "unet" / "config.json")
    if unet_cfg.get("in_channels", 4) != 4:
        raise WeightsError(
            f"{SETTING}={folder}: the UNet takes {unet_cfg.get('in_channels')} input channels "
            "(an inpainting or depth model?); img2img restoration needs a 4-channel SD1.5 UNet."
        )


def _files(d: Path) -> list[Path]:
    return sorted(f for f in d.iterdir() if f.is_file()) if d.is_dir() else []


def _read_json(p: Path) -> dict[str, Any]:
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise WeightsError(f"{SETTING}: {p} is unreadable ({exc}). " + LAYOUT_HELP) from exc
    return data if isinstance(data, dict) else {}


# ----------------------------------------------------------------------------- identity

_identity_cache: dict[tuple, str] = {}
_identity_lock = threading.Lock()
_file_hashes: dict[tuple, str] = {}  # (path, size, mtime_ns, ctime_ns) -> sha256 of the content
HASH_CACHE_FILE = ".weights-sha256.json"  # in the models folder (hidden: never part of a model)
_HASH_CHUNK = 8 * _MIB


def _content_files(src: WeightsSource) -> list[tuple[str, Path]]:
    """(name inside the model, file) for every weight and config file that makes the model. A
    single checkpoint is named ``checkpoint`` whatever its file name: the identity follows the
    content, so a renamed copy keeps it."""
    roots: list[tuple[str, Path]] = []
    if src.kind == "single_file":
        roots.append(("checkpoint", src.path))
        base = src.config_dir
        assert base is not None
        skip_weights = True
    else:
        base, skip_weights = src.path, False
    for f in sorted(base.rglob("*")):
        if not f.is_file() or any(part.startswith(".") for part in f.relative_to(base).parts):
            continue
        suffix = f.suffix.lower()
        if suffix in CONFIG_SUFFIXES or (suffix in WEIGHT_SUFFIXES and not skip_weights):
            roots.append((f.relative_to(base).as_posix(), f))
    return roots


def _stat_key(f: Path) -> tuple[str, int, int, int]:
    """What says a file is unchanged: its resolved path, size, mtime and ctime (ctime also moves
    when a copy keeps the old mtime, e.g. ``cp -p`` or ``rsync -t`` over the file)."""
    st = f.stat()
    return (str(f.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _sha256_file(f: Path) -> str:
    """SHA-256 of the whole file, read in 8 MiB chunks; read again if it changed meanwhile."""
    for _ in range(3):
        before = _stat_key(f)
        h = hashlib.sha256()
        with f.open("rb") as fh:
            while chunk := fh.read(_HASH_CHUNK):
                h.update(chunk)
        if _stat_key(f) == before:
            return h.hexdigest()
    raise WeightsError(f"{SETTING}: {f} kept changing while it was read; wait until it is "
                       "completely written, then try again.")


def _sidecar(cache_dir: Path | None) -> Path | None:
    return Path(cache_dir) / HASH_CACHE_FILE if cache_dir is not None else None


def _read_sidecar(path: Path | None) -> dict[str, str]:
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # absent or damaged: it is only a cache, the files are hashed again
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)} \
        if isinstance(data, dict) else {}


def _write_sidecar(path: Path | None, add: dict[str, str]) -> None:
    """Merge ``add`` into the sidecar cache (atomic replace; a lost race costs a rehash); an
    entry for the same file with an older stat is dropped."""
    if path is None or not add:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        paths = {json.loads(k)[0] for k in add}
        merged = {k: v for k, v in _read_sidecar(path).items() if _entry_path(k) not in paths}
        merged.update(add)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(merged, fh, indent=0, sort_keys=True)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only models folder: the in-process cache still holds


def _entry_path(key: str) -> str | None:
    try:
        entry = json.loads(key)
    except ValueError:
        return None
    return entry[0] if isinstance(entry, list) and entry and isinstance(entry[0], str) else None


def file_sha256(f: Path, *, cache_dir: Path | None = None) -> str:
    """SHA-256 of a file's content, computed once per (path, size, mtime, ctime): kept in this
    process and, with ``cache_dir``, in ``cache_dir/.weights-sha256.json`` for other processes."""
    key = _stat_key(f)
    with _identity_lock:
        if key in _file_hashes:
            return _file_hashes[key]
    side = _sidecar(cache_dir)
    skey = json.dumps(key)
    digest = _read_sidecar(side).get(skey)
    if digest is None:
        digest = _sha256_file(f)
        key = _stat_key(f)
        _write_sidecar(side, {json.dumps(key): digest})
    with _identity_lock:
        _file_hashes[key] = digest
    return digest


def _identity_key(src: WeightsSource, files: list[tuple[str, Path]]) -> tuple:
    return (str(src.path), str(src.config_dir), src.smoke_test,
            tuple((rel, *_stat_key(f)) for rel, f in files))


def model_identity(src: WeightsSource, *, cache_dir: Path | None = None) -> str:
    """``sd15-<sha256>`` (``tiny-<sha256>`` for the smoke-test model): SHA-256 over (name inside
    the model, size, SHA-256 of the whole content) of every weight and config file. Two files
    with the same name and size but other bytes (a merge saved over the old one) get different
    identities; the same bytes anywhere get the same one. Each file is hashed once per (path,
    size, mtime, ctime), in this process and, with ``cache_dir`` (the models folder), in a small
    sidecar file that other processes read."""
    files = _content_files(src)
    key = _identity_key(src, files)
    with _identity_lock:
        if key in _identity_cache:
            return _identity_cache[key]
    entries = [[rel, f.stat().st_size, file_sha256(f, cache_dir=cache_dir)] for rel, f in files]
    digest = hashlib.sha256(json.dumps(sorted(entries)).encode()).hexdigest()
    ident = f"{'tiny' if src.smoke_test else 'sd15'}-{digest}"
    if _identity_key(src, files) == key:  # unchanged while hashed
        with _identity_lock:
            _identity_cache[key] = ident
    return ident


def weights_identity(path: Path | str | None, *, models_dir: Path | None = None,
                     config_dir: Path | None = None) -> str:
    """The identity of the weights ``path`` names (as :func:`load_pipeline` resolves them),
    without loading them: what a restoration made with them is stored under."""
    with _quiet_loading():
        src = resolve_weights(path, models_dir=models_dir, config_dir=config_dir)
    return model_identity(src, cache_dir=models_dir)


# ----------------------------------------------------------------------------- device, dtype

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def pick_device(requested: str = "auto") -> str:
    """cuda, then mps, then cpu for "auto"; an explicit device that is absent is an error."""
    import torch

    has = {"cuda": torch.cuda.is_available(),
           "mps": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
           "cpu": True}
    if requested == "auto":
        return next(d for d in ("cuda", "mps", "cpu") if has[d])
    if requested not in has:
        raise ValueError(f"device={requested!r} is invalid: allowed one of "
                         "['auto', 'cpu', 'cuda', 'mps']")
    if not has[requested]:
        raise ValueError(f"device={requested!r} was requested but is not available here")
    return requested


def cpu_has_bf16() -> bool:
    """True when the CPU has bf16 matrix instructions (AVX512_BF16 or AMX) that oneDNN uses."""
    import torch

    if not torch.backends.mkldnn.is_available():
        return False
    probe = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    if probe is not None:
        try:
            if not probe():
                return False
        except RuntimeError:
            return False
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            flags = next((line for line in fh if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def pick_precision(precision: str, device: str) -> str:
    """Resolve "auto": fp16 on GPUs; bf16 on CPUs with bf16 matrix units; fp32 otherwise.

    bf16 on CPU is chosen because the measured output stays close to fp32 (tests assert
    PSNR >= 30 dB between the two on the tiny model; bench/restore_grid.py measures it on
    SD1.5-sized weights) while the work runs about 2x faster (measured on a 2-core AMD EPYC
    with AVX512_BF16, SD1.5-sized UNet at 256 px, CFG pair: 3.02 s fp32 vs 1.32 s bf16; VAE
    decode 3.72 s vs 1.56 s).
    """
    if precision == "auto":
        if device in ("cuda", "mps"):
            return "fp16"
        return "bf16" if cpu_has_bf16() else "fp32"
    if precision not in DTYPES:
        raise ValueError(f"precision={precision!r} is invalid: allowed one of "
                         f"['auto', {', '.join(repr(k) for k in DTYPES)}]")
    if precision == "fp16" and device == "cpu":
        raise ValueError("precision='fp16' needs a GPU (cuda or mps); on CPU use 'bf16' or "
                         "'fp32'")
    return precision


# ----------------------------------------------------------------------------- quiet loading

TORCHVISION_FALLBACK = "requires torchvision (not installed); falling back to"


class _TorchvisionFallbackFilter(logging.Filter):
    """Drops transformers' warning that an image processor falls back to its PIL version: no
    image processor is used here and torchvision is deliberately not installed, so a user can do
    nothing about it. Every other message passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return TORCHVISION_FALLBACK not in record.getMessage()


def silence_unactionable_warnings() -> None:
    """Install the filter on the one logger that emits that warning (idempotent)."""
    log = logging.getLogger("transformers.utils.import_utils")
    if not any(isinstance(f, _TorchvisionFallbackFilter) for f in log.filters):
        log.addFilter(_TorchvisionFallbackFilter())


@contextmanager
def _quiet_loading() -> Iterator[None]:
    """No diffusers/transformers progress bars or "install accelerate" notes while loading;
    the previous settings come back afterwards. Without the sd15 extra (`make install-base`)
    there is nothing to quiet: the body runs as it is, so what needs no torch (an unset
    REVIEW_SD15_PATH, a weights file's identity) is still answered."""
    if not all(importlib.util.find_spec(name) for name in ("diffusers", "transformers")):
        yield
        return
    silence_unactionable_warnings()
    from diffusers.utils import logging as dlogging
    from transformers.utils import logging as tlogging

    level, d_bars, t_bars = (dlogging.get_verbosity(), dlogging.is_progress_bar_enabled(),
                             tlogging.is_progress_bar_enabled())
    dlogging.set_verbosity_error()
    dlogging.disable_progress_bar()
    tlogging.disable_progress_bar()
    try:
        yield
    finally:
        dlogging.set_verbosity(level)
        if d_bars:
            dlogging.enable_progress_bar()
        if t_bars:
            tlogging.enable_progress_bar()


# ----------------------------------------------------------------------------- loading


@dataclass
class SD15Pipeline:
    """A loaded img2img pipeline with what provenance needs, and the lock that serialises it.

    The UNet and VAE run in ``dtype``; the text encoder stays fp32 on CPU (it runs once per
    prompt); latents and scheduler arithmetic are always fp32.
    """

    pipe: Any  # diffusers.StableDiffusionImg2ImgPipeline
    device: str
    precision: str  # "fp32" | "bf16" | "fp16"
    model_identity: str
    smoke_test: bool
    source: WeightsSource
    name: str = ""  # readable, for people; model_identity is what identifies the weights
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def dtype(self) -> str:
        return DTYPES[self.precision]


_pipelines: OrderedDict[tuple, SD15Pipeline] = OrderedDict()
_pipelines_lock = threading.Lock()
MAX_CACHED_PIPELINES = 2


#: What running SD1.5 needs beyond the base install (requirements-sd15.lock).
SD15_PACKAGES = ("torch", "diffusers", "transformers")


def require_sd15_packages() -> None:
    """Refuse plainly when this install lacks SD1.5's packages (`make install-base` alone)."""
    missing = [name for name in SD15_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise WeightsError(f"Stable Diffusion 1.5 needs {', '.join(missing)}, which this install lacks "
                           "(the base install leaves them out). Run `make install` to add them "
                           "(requirements-sd15.lock), then try again.")


def load_pipeline(
    path: Path | str | None,
    *,
    models_dir: Path | None = None,
    config_dir: Path | None = None,
    device: str = "auto",
    precision: str = "auto",
) -> SD15Pipeline:
    """Load (or reuse) the img2img pipeline for these weights, device and precision.

    Loaded pipelines are kept by the weights' content identity, which is checked (by file
    stat, see :func:`model_identity`) on every call: weights replaced in place are loaded again,
    never served from the old copy. A file that changes while it loads is loaded again."""
    with _quiet_loading():
        src = resolve_weights(path, models_dir=models_dir, config_dir=config_dir)
    require_sd15_packages()
    dev = pick_device(device)
    prec = pick_precision(precision, dev)
    for _ in range(3):
        ident = model_identity(src, cache_dir=models_dir)
        key = (ident, str(src.path), dev, prec)
        with _pipelines_lock:
            if key in _pipelines:
                _pipelines.move_to_end(key)
                return _pipelines[key]
            with _quiet_loading():
                pipe = _load(src, dev, prec)
            if model_identity(src, cache_dir=models_dir) != ident:
                continue  # replaced while it loaded: what was loaded has no known identity
            loaded = SD15Pipeline(pipe=pipe, device=dev, precision=prec, model_identity=ident,
                                  smoke_test=src.smoke_test, source=src, name=model_name(src))
            for stale in [k for k in _pipelines if k[1] == key[1] and k[0] != ident]:
                del _pipelines[stale]  # the same path's earlier content: never used again
            _pipelines[key] = loaded
            while len(_pipelines) > MAX_CACHED_PIPELINES:
                _pipelines.popitem(last=False)
            return loaded
    raise WeightsError(f"{SETTING}={src.path} kept changing while it was loaded; wait until it "
                       "is completely written, then try again.")


def _load(src: WeightsSource, device: str, precision: str) -> Any:
    os.environ["HF_HUB_OFFLINE"] = "1"  # belt and braces on top of local_files_only
    import torch
    from diffusers import StableDiffusionImg2ImgPipeline

    torch_dtype = torch.float16 if precision == "fp16" else torch.float32
    common = dict(local_files_only=True, safety_checker=None, requires_safety_checker=False,
                  dtype=torch_dtype)
    try:
        if src.kind == "folder":
            pipe = StableDiffusionImg2ImgPipeline.from_pretrained(str(src.path), **common)
        else:
            assert src.config_dir is not None
            pipe = StableDiffusionImg2ImgPipeline(
                **load_components(src.path, src.config_dir, torch_dtype),
                safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    except CheckpointError as exc:
        raise WeightsError(f"{SETTING}={src.path}: {exc}") from exc
    except Exception as exc:  # diffusers raises OSError, ValueError, RuntimeError, ...
        where = src.path if src.kind == "folder" else f"{src.path} (configs {src.config_dir})"
        raise WeightsError(
            f"{SETTING}={where} could not be loaded as an SD1.5 img2img pipeline: "
            f"{type(exc).__name__}: {str(exc)[:500]}. " + LAYOUT_HELP
        ) from exc
    _prepare(pipe, device, precision)
    return pipe


def _prepare(pipe: Any, device: str, precision: str) -> None:
    """UNet and VAE to bf16 when asked (text encoder stays fp32), move, silence progress bars."""
    import torch

    if precision == "bf16":
        pipe.unet.to(torch.bfloat16)
        pipe.vae.to(torch.bfloat16)
        if device == "cpu":
            # oneDNN's bf16 convolutions are faster channels-last: measured VAE decode at
            # 256 px 1.90 -> 1.56 s, encode 0.79 -> 0.68 s (the UNet gains nothing)
            pipe.vae.to(memory_format=torch.channels_last)
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)


def pipeline_from_components(
    components: dict[str, Any],
    *,
    identity: str,
    device: str = "auto",
    precision: str = "auto",
    smoke_test: bool = False,
) -> SD15Pipeline:
    """Wrap in-memory components (benchmarks with random weights) like a loaded pipeline.

    The modules are cast and moved in place: pass copies if the caller keeps using them.
    """
    dev = pick_device(device)
    prec = pick_precision(precision, dev)
    with _quiet_loading():
        from diffusers import StableDiffusionImg2ImgPipeline

        # Any: a type checker sees diffusers' top-level name as its torch-less placeholder
        pipe: Any = StableDiffusionImg2ImgPipeline(**components, safety_checker=None,
                                                   feature_extractor=None,
                                                   requires_safety_checker=False)
        if prec == "fp16":
            import torch

            pipe.to(torch.float16)
        _prepare(pipe, dev, prec)
    return SD15Pipeline(pipe=pipe, device=dev, precision=prec, model_identity=identity,
                        smoke_test=smoke_test, name=identity,
                        source=WeightsSource("in_memory", Path("<in memory>")))
