"""Build small real image folders and zips with Pillow for the data tests."""

import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from nnx.datasets import synthetic_images


def class_images(n_per_class: int, size: int = 40, seed: int = 0):
    """n_per_class (cat, dog) RGB pictures as uint8 arrays, from the synthetic set."""
    X, Y = synthetic_images(m=4 * n_per_class, size=size, seed=seed)
    pics = X.T.reshape(-1, size, size, 3)
    cats = [p for p, y in zip(pics, Y[0]) if y == 0][:n_per_class]
    dogs = [p for p, y in zip(pics, Y[0]) if y == 1][:n_per_class]
    return cats, dogs


def jpeg_bytes(arr) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def odd_images(base) -> dict[str, bytes]:
    """Good images in unusual modes, keyed by a Kaggle-style suffix."""
    rgb = Image.fromarray(base)
    cmyk = io.BytesIO()
    rgb.convert("CMYK").save(cmyk, format="JPEG")
    palette = rgb.convert("P", palette=Image.ADAPTIVE, colors=16)
    palette.info["transparency"] = 0
    rgba = rgb.convert("RGBA")
    rgba.putalpha(128)
    grey16 = Image.fromarray(np.asarray(rgb.convert("L"), dtype=np.uint16) * 257)
    return {
        "grey.png": png_bytes(rgb.convert("L")),
        "cmyk.jpg": cmyk.getvalue(),
        "palette.png": png_bytes(palette),
        "alpha.png": png_bytes(rgba),
        "la.png": png_bytes(rgb.convert("LA")),
        "grey16.png": png_bytes(grey16),
    }


def kaggle_folder(root: Path, n_per_class: int = 12, size: int = 40, with_bad: bool = True) -> dict:
    """cat.N.jpg / dog.N.jpg plus (optionally) every kind of bad file; returns what was made."""
    root.mkdir(parents=True, exist_ok=True)
    cats, dogs = class_images(n_per_class, size)
    for i, (c, d) in enumerate(zip(cats, dogs)):
        (root / f"cat.{i}.jpg").write_bytes(jpeg_bytes(c))
        (root / f"dog.{i}.jpg").write_bytes(jpeg_bytes(d))
    made = {"good": 2 * n_per_class, "odd": [], "bad": {}}
    for k, (suffix, data) in enumerate(odd_images(cats[0]).items()):
        name = f"{'cat' if k % 2 else 'dog'}.odd{k}.{suffix}"
        (root / name).write_bytes(data)
        made["odd"].append(name)
    if with_bad:
        full = jpeg_bytes(dogs[0])
        bad = {
            "cat.zero.jpg": b"",
            "dog.truncated.jpg": full[: len(full) // 3],
            "cat.text.jpg": b"this is not a picture\n",
        }
        for name, data in bad.items():
            (root / name).write_bytes(data)
        made["bad"] = bad
    (root / "README.txt").write_text("not an image")
    return made


def zip_of(folder: Path, target: Path, extra: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(target, "w") as zf:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(folder).as_posix())
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return target
