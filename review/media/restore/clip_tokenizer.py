"""CLIP's byte-level BPE vocabulary files, written the way OpenAI CLIP's SimpleTokenizer builds
them, for transformers' CLIPTokenizer: byte symbols, the same with ``</w>``, one token per merge,
then ``<|startoftext|>`` and ``<|endoftext|>``. The real SD1.5 tokenizer (all of CLIP's merges)
and the tiny smoke-test one (no merges) are made by the same code.
"""

from __future__ import annotations

import json
from pathlib import Path


def bytes_to_unicode() -> dict[int, str]:
    """CLIP/GPT-2's reversible byte -> printable unicode map."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
          + list(range(ord("®"), ord("ÿ") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


def write_vocab(folder: Path, merges: list[tuple[str, ...]]) -> tuple[Path, Path]:
    """vocab.json and merges.txt in ``folder`` for the given merges; returns both paths."""
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    vocab_file, merges_file = folder / "vocab.json", folder / "merges.txt"
    vocab_file.write_text(json.dumps({t: i for i, t in enumerate(tokens)}, ensure_ascii=False),
                          encoding="utf-8")
    merges_file.write_text("#version: 0.2\n" + "".join(" ".join(m) + "\n" for m in merges),
                           encoding="utf-8")
    return vocab_file, merges_file
