"""Decoding image bytes to RGB pixels (Pillow), and the tutorials' image helpers."""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np


# ----------------------------------------------------------------- decoding
def decode_image(data: bytes, size: int) -> np.ndarray:
    """Decode image bytes to a (size, size, 3) uint8 RGB array with Pillow.

    The EXIF orientation is applied first, so phone photos come out upright (a malformed
    EXIF block is ignored and the picture used as stored). Every mode becomes RGB: palette
    and alpha images are composited on white, CMYK is converted, 16/32-bit greyscale is
    scaled to 8 bits. Resizing is bilinear, as the tutorials' imresize. Raises ValueError
    (corrupt, truncated, not an image, or larger than Pillow's decompression-bomb limit).
    """
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise ValueError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                img.load()
                rgb = _to_rgb(_upright(img))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ValueError(f"refused as a decompression bomb ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise ValueError("not an image Pillow can read") from exc
    except MemoryError as exc:
        raise ValueError("too large to decode in the memory available") from exc
    except Exception as exc:  # truncated / corrupt streams (OSError, SyntaxError, ValueError, ...)
        raise ValueError(f"corrupt or truncated image ({exc})") from exc
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8)


def _upright(img: Any) -> Any:
    """The image turned as its EXIF orientation tag says (unchanged without one)."""
    from PIL import ImageOps

    try:
        if img.getexif().get(0x0112, 1) == 1:  # no tag, or already upright: no copy
            return img
        return ImageOps.exif_transpose(img)
    except Exception:  # a malformed EXIF block: use the picture as stored
        return img


def _to_rgb(img: Any) -> Any:
    from PIL import Image

    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img).astype(np.float64)
        top = 65535.0 if (mode.startswith("I;16") or arr.max() > 255) else 255.0
        arr = np.clip(arr * (255.0 / top), 0, 255).astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def image2vec(image: np.ndarray) -> np.ndarray:
    """The tutorial's image2vector: an (h, w, c) image as a column (h*w*c, 1), same dtype."""
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"image2vec needs an (height, width, channels) array, got shape {image.shape}")
    return image.reshape(-1, 1)


def normalize(x: np.ndarray) -> np.ndarray:
    """The tutorial's normalizeRows: each row divided by its L2 norm (zero rows stay zero).

    (Pixel scaling by 1/255 is not needed: nnx applies it to uint8 X itself.)
    """
    x = np.asarray(x, dtype=np.float64)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)
