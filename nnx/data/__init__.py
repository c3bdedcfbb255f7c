"""Loading data: image folders and zips (Pillow), npz caches, the tutorials' CSV and h5,
and the built-in sets.

Every loader returns X as (n_x, m) example-contiguous (Fortran order) and Y as (1, m).
Images come back as uint8 pixels; nnx applies the 1/255 itself when training.

No bad input file aborts an image load: it is skipped and listed with the reason. A bad
CSV, npz or h5 dataset raises ``DataError`` with a one-line message that names the file
and what to do; a missing path raises ``FileNotFoundError``.

One module per source: ``common`` (limits, messages, reading one file safely), ``zips``
and ``listing`` (image folders and zips, class inference), ``decode``, ``cache``,
``parallel`` (decoding on threads), ``images`` (``load_images``), ``arrays`` (checks the
array files share), ``csv_file``, ``npz_file``, ``h5_file``, and ``builtin`` (the
synthetic pictures and the tutorials' toy sets, also ``nnx.datasets``).
"""

from __future__ import annotations

from ..errors import DataError, UnusableFileError
from .arrays import ArrayData
from .cache import CACHE_VERSION
from .cache import write_cache as _write_cache
from .common import IMAGE_EXTENSIONS, LAYOUTS, MAX_CLASSES, MAX_IMAGE_BYTES, read_image_file, safe_name
from .csv_file import CSV_LAYOUTS, load_csv, read_csv
from .decode import decode_image, image2vec, normalize
from .h5_file import load_h5, read_h5
from .images import ImageData, load_images
from .listing import Source as _Source
from .npz_file import load_npz, read_npz

__all__ = [
    "CACHE_VERSION",
    "CSV_LAYOUTS",
    "ArrayData",
    "IMAGE_EXTENSIONS",
    "LAYOUTS",
    "MAX_CLASSES",
    "MAX_IMAGE_BYTES",
    "DataError",
    "ImageData",
    "UnusableFileError",
    "_Source",
    "_write_cache",
    "decode_image",
    "image2vec",
    "load_csv",
    "load_h5",
    "load_images",
    "load_npz",
    "normalize",
    "read_csv",
    "read_h5",
    "read_npz",
    "read_image_file",
    "safe_name",
]
