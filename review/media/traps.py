"""Trapping questions for crowd sessions: a study image with its right answer written on it.

As P.808's trapping stimuli, the item itself says what to answer ("Attention check: select 2"), so
a participant who looks at the item cannot miss it and one who answers without looking fails it.
The text sits on a banner across the image so it survives the display's downscaling.
"""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

BANNER_SHARE = 0.22  # of the image's height


def trap_image(base: Image.Image, answer: int) -> Image.Image:
    """`base` (RGB) with a banner asking for `answer`."""
    img = base.convert("RGB").copy()
    w, h = img.size
    band = max(int(h * BANNER_SHARE), 24)
    top = (h - band) // 2
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, top, w, top + band), fill=(255, 255, 255))
    text = f"Attention check: select {answer} for this image"
    size = max(10, band // 3)
    font = ImageFont.load_default(size=size)
    while size > 8 and draw.textlength(text, font=font) > w * 0.94:
        size -= 1
        font = ImageFont.load_default(size=size)
    left = (w - draw.textlength(text, font=font)) / 2
    draw.text((left, top + (band - size) / 2), text, fill=(0, 0, 0), font=font)
    return img
