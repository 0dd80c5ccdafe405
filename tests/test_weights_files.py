"""Files the user names that are not what they should be (issue 21): a ``.safetensors`` whose
header is malformed gets one message naming the file and what to do, never a traceback; a FIFO
(or device) given where a file is read is refused before anything opens it, instead of hanging.

Every blocking call runs in a daemon thread with a time limit, so the old hang shows as a
failure here, not as a suite that never ends.
"""

from __future__ import annotations

import io
import json
import os
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from PIL import Image

from review.cli import cli
from review.errors import regular_file_problem
from review.media.decode import ImageRejected, decode_file
from review.media.restore.sd15_weights import WeightsError, resolve_weights

LIMIT_S = 10
fifo_only = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo (POSIX)")


def safetensors(header: Any, data: bytes = b"", *, length: int | None = None) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if length is None else length) + raw + data


GOOD = {"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}

MALFORMED = {
    "not JSON": (safetensors(b"{not json", bytes(16)), "not valid JSON"),
    "not UTF-8": (safetensors(b'{"\xff\xfe": 1}', bytes(16)), "not valid JSON"),
    "a JSON list": (safetensors([1, 2, 3]), "not an object of tensors"),
    "a JSON string": (safetensors("weights"), "not an object of tensors"),
    "deeply nested": (safetensors(b"[" * 100_000 + b"]" * 100_000), "not valid JSON"),
    "length past the end": (safetensors(GOOD, bytes(16), length=10_000), "only"),
    "shorter than the length field": (b"\x10\x00\x00", "fewer than the 8-byte"),
    "tensor not an object": (safetensors({"w": [0, 16]}, bytes(16)), "no known dtype"),
    "unknown dtype": (safetensors({"w": {"dtype": "F128", "shape": [2], "data_offsets": [0, 32]}},
                                  bytes(32)), "no known dtype ('F128')"),
    "dtype not a string": (safetensors({"w": {"dtype": 4, "shape": [2], "data_offsets": [0, 8]}},
                                       bytes(8)), "no known dtype"),
    "shape not a list": (safetensors({"w": {"dtype": "F32", "shape": "2x2", "data_offsets": [0, 16]}},
                                     bytes(16)), "no valid shape"),
    "negative dimension": (safetensors({"w": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}},
                                       bytes(16)), "no valid shape"),
    "offsets past the end": (safetensors({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}},
                                         bytes(8)), "lies outside the file"),
    "offsets reversed": (safetensors({"w": {"dtype": "F32", "shape": [0], "data_offsets": [8, 0]}},
                                     bytes(8)), "lies outside the file"),
    "offsets not numbers": (safetensors({"w": {"dtype": "F32", "shape": [2],
                                               "data_offsets": ["0", "8"]}}, bytes(8)),
                            "lies outside the file"),
    "size does not fit the shape": (safetensors({"w": {"dtype": "F32", "shape": [3],
                                                       "data_offsets": [0, 8]}}, bytes(8)),
                                    "has 8 bytes for shape [3] of F32"),
    "metadata not an object": (safetensors({"__metadata__": [1], **GOOD}, bytes(16)),
                               "__metadata__ is not an object"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_safetensors_header_is_one_plain_message(tmp_path: Path, case: str) -> None:
    data, detail = MALFORMED[case]
    path = tmp_path / "model.safetensors"
    path.write_bytes(data)
    with pytest.raises(WeightsError) as info:
        resolve_weights(path, models_dir=tmp_path / "models")
    message = str(info.value)
    assert "model.safetensors is not a readable .safetensors file" in message
    assert detail in message
    assert "download it again" in message
    assert "\n" not in message and "Traceback" not in message


def test_a_well_formed_header_gets_past_the_header_check(tmp_path: Path) -> None:
    """The checks refuse nothing valid: a sound header reaches the SD1.5 classification."""
    path = tmp_path / "model.safetensors"
    path.write_bytes(safetensors({"__metadata__": {"format": "pt"}, **GOOD}, bytes(16)))
    with pytest.raises(WeightsError) as info:
        resolve_weights(path, models_dir=tmp_path / "models")
    assert "not a readable .safetensors file" not in str(info.value)


# ---------------------------------------------------------------------------------------------
# FIFOs and other non-regular files


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    made: list[Path] = []

    def make(name: str) -> Path:
        path = tmp_path / name
        os.mkfifo(path)
        made.append(path)
        return path

    yield make
    for path in made:  # a reader the old code left blocked gets end-of-file and finishes
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass


def within_limit(call: Callable[[], Any]) -> Any:
    """Run ``call`` in a daemon thread; its result or exception, or a failure after LIMIT_S."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            outcome["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(LIMIT_S)
    if worker.is_alive():
        pytest.fail(f"still blocked after {LIMIT_S} s: a non-regular file was opened for reading")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


@fifo_only
def test_fifo_as_the_weights_path_is_refused_at_once(fifo: Callable[[str], Path], tmp_path: Path) -> None:
    path = fifo("v1-5-pruned-emaonly.safetensors")
    with pytest.raises(WeightsError) as info:
        within_limit(lambda: resolve_weights(path, models_dir=tmp_path / "models"))
    assert "is a FIFO (named pipe), not a regular file" in str(info.value)
    assert "Point it at the checkpoint file itself" in str(info.value)


@fifo_only
def test_fifo_given_as_an_image_file_is_refused_at_once(fifo: Callable[[str], Path]) -> None:
    path = fifo("photo.jpg")
    with pytest.raises(ImageRejected) as info:
        within_limit(lambda: decode_file(path))
    assert info.value.code == "not_a_file"
    assert "is a FIFO (named pipe), not a regular file" in info.value.message


def test_regular_file_problem_names_the_kind(tmp_path: Path) -> None:
    photo = tmp_path / "photo.png"
    Image.new("RGB", (8, 8)).save(photo)
    assert regular_file_problem(photo) is None
    assert regular_file_problem(tmp_path) == f"{tmp_path} is a folder, not a regular file"
    assert "cannot be read" in (regular_file_problem(tmp_path / "missing.png") or "")
    if os.path.exists("/dev/null"):
        assert regular_file_problem("/dev/null") == "/dev/null is a character device, not a regular file"


@fifo_only
@pytest.mark.parametrize(("args", "name"), [
    (["import", "{fifo}", "--study", "from a pipe"], "ratings.jsonl"),
    (["stats", "--input", "{fifo}"], "ratings.csv"),
    (["restore", "{fifo}", "{out}", "--method", "wiener"], "photo.png"),
    (["generate", "some study", "--plan", "{fifo}"], "plan.json"),
])
def test_cli_refuses_a_fifo_as_an_input_file(fifo: Callable[[str], Path], tmp_path: Path,
                                             args: list[str], name: str) -> None:
    path = fifo(name)
    argv = [a.format(fifo=path, out=tmp_path / "out.png") for a in args]
    result = within_limit(lambda: CliRunner().invoke(cli, argv))
    assert result.exit_code == 2, result.output
    assert "is a FIFO (named pipe), not a regular file; give the path of the file itself." in result.output
    assert "Traceback" not in result.output


def test_image_file_still_decodes(tmp_path: Path) -> None:
    path = tmp_path / "photo.png"
    buf = io.BytesIO()
    Image.new("RGB", (16, 12), (10, 20, 30)).save(buf, format="PNG")
    path.write_bytes(buf.getvalue())
    assert decode_file(path).size == (16, 12)


def test_a_base_install_is_told_to_run_make_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the sd15 packages (`make install-base`), SD1.5 says what to run instead of failing
    with "No module named torch"; with them it says nothing."""
    import importlib.util

    from review.media.restore import sd15_weights

    sd15_weights.require_sd15_packages()  # this install has them
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("torch", "diffusers") else real(name, *a))
    with pytest.raises(sd15_weights.WeightsError, match=r"needs torch, diffusers.*Run `make install`"):
        sd15_weights.require_sd15_packages()
