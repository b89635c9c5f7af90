"""Safe decoding of whatever image a user hands us.

`open_image` turns a path, bytes or a PIL image into a plain "L" or "RGB" picture, whatever Pillow
mode, orientation or animation it came in; `to_uint8_tensor` resizes it into a uint8 (C, H, W) tensor.
The folder dataset and the predictor both go through these two functions, so an image is prepared
exactly the same way for training and for prediction.

Choices, in one place:
- Transparent pixels are composited onto white, as a browser or document shows them.
- 16-bit images are scaled by their full range (value / 257); 32-bit integer and float images keep
  0..255 data as is, 0..1 floats are multiplied by 255, 0..65535 integers are divided by 257, and
  anything else is stretched from its own minimum to maximum. Nothing is clipped. NaN and -inf show
  as the darkest value, +inf as the brightest.
- The EXIF orientation is applied, and an animation gives its first frame (a PIL image passed in
  keeps the frame it is at).
- Pictures larger than MAX_SIDE pixels on a side are reduced early (JPEGs decode at 1/2, 1/4 or 1/8
  scale via `draft`), so a 100-megapixel photo does not need gigabytes.
- Only regular files are opened: a FIFO, device or socket is refused by name (core/reading.py).
- Pillow's decompression-bomb limit applies: above 2 × Image.MAX_IMAGE_PIXELS an image is refused
  (between 1× and 2× Pillow only warns; the early reduction keeps those affordable).
- `to_uint8_tensor` stretches to the target size (no cropping, so nothing of the picture is lost)
  with Pillow's antialiased bilinear filter, torchvision's default.
- `crop_to_content` (an image folder's `data.crop_to_content`) does what MNIST did to its digits: an
  object on a plain background is cut out, centred and scaled to fill the frame, so where and how big
  it was drawn no longer matters. A picture without a plain border (a photo) is left as it is.
"""

from __future__ import annotations

import io
import re
import struct
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from perceiver_gui.core.reading import IMAGE_SUFFIXES, check_regular

if TYPE_CHECKING:  # torch is imported where a tensor is made, so decoding alone (and the UI) needs no torch
    import torch

__all__ = ["IMAGE_SUFFIXES", "MAX_SIDE", "RESAMPLE", "ImageError", "crop_to_content", "image_files", "open_image",
           "to_uint8_tensor"]

MAX_SIDE = 4096  # longest side kept after decoding; far above any training resolution we allow (512)
RESAMPLE = Image.Resampling.BILINEAR  # the one filter used to resize, for training and prediction alike
BACKGROUND = 255  # white, the value transparent pixels are composited onto (per channel)

# What Pillow raises on malformed input; anything of these while decoding means "bad file", not a bug.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, TypeError, IndexError, KeyError, struct.error,
                  ZeroDivisionError, MemoryError, OverflowError, RuntimeError)
# crop_to_content: a pixel is content when a channel differs from the background by more than this (of 255:
# above JPEG noise and antialiasing fringes); the border is plain when less than PLAIN_BORDER of it is
# content (a big object in a corner covers a third of it; a photo's border mostly differs from its median);
# CONTENT_MARGIN of the object's size is kept around it, so its outline is not cut by the frame.
CONTENT_THRESHOLD = 24
PLAIN_BORDER = 0.5
CONTENT_MARGIN = 0.05
_GRAY_NUMERIC = ("I;16", "I;16L", "I;16B", "I;16N", "I", "I;32", "F")


def image_files(folder: Path, *, suffixes: Collection[str] = IMAGE_SUFFIXES) -> list[Path]:
    """The image files anywhere under `folder`, sorted: a known suffix, not a folder, nothing hidden on the
    way down from `folder` (.git, .thumbnails, macOS ._ files). The one rule for training folders, their size
    guess, folders dropped on the classifier and `perceiver-gui predict`. Not is_file(): a FIFO or device named
    like an image is listed, and open_image refuses it with a sentence. Raises OSError when the folder cannot be
    read (NotADirectoryError when it is not a folder). Other `suffixes` list other files by the same rule (a
    folder of meshes and point files)."""
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder} is not a folder.")
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in suffixes and not p.is_dir()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


class ImageError(Exception):
    """An image that cannot be used; the message names the file and says what is wrong in one sentence.

    `reason` holds the second half alone ("the file is truncated"), for lists that already show the name.
    """

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"Can't read {name}: {reason}.")
        self.name = name
        self.reason = reason


def open_image(source: str | Path | bytes | Image.Image, *, channels: int) -> Image.Image:
    """Decode `source` into a new image of mode "L" (channels=1) or "RGB" (channels=3).

    Raises ImageError for missing files, non-images, truncated or corrupt files and decompression
    bombs; never anything else for bad input.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, not {channels!r}")
    if isinstance(source, Image.Image):
        name = "the image"
        img, opened = source, False
    elif isinstance(source, bytes | bytearray | memoryview):
        name = "the image data"
        img, opened = _open(io.BytesIO(bytes(source)), name), True
    else:
        path = Path(source)
        name = str(path)
        _check_regular(path, name)
        img, opened = _open(path, name), True
    try:
        try:
            return _decode(img, channels)
        except ImageError:
            raise
        except Image.DecompressionBombError as exc:
            raise ImageError(name, _bomb_reason(exc)) from None
        except _DECODE_ERRORS as exc:
            raise ImageError(name, _describe(exc, getattr(img, "format", None))) from None
    finally:
        if opened:
            img.close()


def to_uint8_tensor(img: Image.Image, size: tuple[int, int]) -> torch.Tensor:
    """A uint8 (C, H, W) tensor of an "L" or "RGB" image (from `open_image`), resized to size=(H, W)."""
    if img.mode not in ("L", "RGB"):
        raise ValueError(f"to_uint8_tensor needs an 'L' or 'RGB' image from open_image, not mode {img.mode!r}")
    height, width = size
    if img.size != (width, height):
        img = img.resize((width, height), RESAMPLE)
    array = np.array(img, dtype=np.uint8, copy=True)
    if array.ndim == 2:
        array = array[None]
    else:
        array = array.transpose(2, 0, 1)
    import torch

    return torch.from_numpy(np.ascontiguousarray(array))


def crop_to_content(img: Image.Image) -> Image.Image:
    """The square around what stands out from a plain background, centred, with a small margin of that
    background; `img` itself when its border is not plain, nothing stands out, or the content fills it.

    The background is the median colour of the one-pixel border; content is every pixel that differs from
    it by more than CONTENT_THRESHOLD in a channel. A square (not the bounding box itself) keeps the
    object's proportions when `to_uint8_tensor` resizes it to the model's square input."""
    if img.mode not in ("L", "RGB"):
        raise ValueError(f"crop_to_content needs an 'L' or 'RGB' image from open_image, not mode {img.mode!r}")
    pixels = np.asarray(img, dtype=np.int16)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    height, width = pixels.shape[:2]
    if height < 3 or width < 3:
        return img
    border = np.concatenate([pixels[0], pixels[-1], pixels[1:-1, 0], pixels[1:-1, -1]])
    background = np.median(border, axis=0)
    if (np.abs(border - background).max(axis=1) > CONTENT_THRESHOLD).mean() > PLAIN_BORDER:
        return img  # no plain background to cut the object from
    rows, cols = np.nonzero(np.abs(pixels - background).max(axis=2) > CONTENT_THRESHOLD)
    if len(rows) == 0:
        return img
    top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    side = int(np.ceil(max(bottom - top, right - left) * (1 + 2 * CONTENT_MARGIN)))
    if side >= min(height, width) and bottom - top >= height - 1 and right - left >= width - 1:
        return img  # the content fills the picture already
    x0 = int(round((left + right - side) / 2))
    y0 = int(round((top + bottom - side) / 2))
    fill = tuple(int(round(v)) for v in background) if img.mode == "RGB" else int(round(background[0]))
    square = Image.new(img.mode, (side, side), fill)
    square.paste(img.crop((max(0, x0), max(0, y0), min(width, x0 + side), min(height, y0 + side))),
                 (max(0, -x0), max(0, -y0)))
    return square


# -- helpers ---------------------------------------------------------------------------------
def _check_regular(path: Path, name: str) -> None:
    """Refuse a FIFO, device or socket before Pillow opens it: a FIFO among the images would wait forever."""
    try:
        check_regular(path)
    except OSError as exc:  # NotARegularFile included: "it is a named pipe (FIFO), not a regular file"
        raise ImageError(name, _os_reason(exc)) from None


def _os_reason(exc: OSError) -> str:
    """Why a file could not be opened, as the end of a sentence."""
    if isinstance(exc, FileNotFoundError):
        return "the file does not exist"
    if isinstance(exc, IsADirectoryError):
        return "it is a folder, not an image file"
    if isinstance(exc, PermissionError):
        return "permission to read the file was denied"
    return exc.strerror or str(exc)


def _open(fp, name: str) -> Image.Image:
    try:
        return Image.open(fp)
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        raise ImageError(name, _os_reason(exc)) from None
    except UnidentifiedImageError:
        raise ImageError(name, "it is not an image file Pillow can read") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(name, _bomb_reason(exc)) from None
    except _DECODE_ERRORS as exc:
        raise ImageError(name, _describe(exc, None)) from None


def _bomb_reason(exc: Exception) -> str:
    found = re.search(r"\((\d+) pixels\)", str(exc))
    size = f"{int(found.group(1)):,} pixels, " if found else ""
    return f"it is too large to open safely ({size}a possible decompression bomb)"


def _describe(exc: BaseException, fmt: str | None) -> str:
    text = str(exc).strip().rstrip(".")
    kind = f"a valid {fmt} file" if fmt else "a valid image file"
    if isinstance(exc, MemoryError):
        return "there is not enough memory to decode it"
    if "truncated" in text.lower() or isinstance(exc, EOFError):
        return "the file is truncated (it ends before the image does)"
    return f"it is damaged or not {kind} ({text or type(exc).__name__})"


def _decode(img: Image.Image, channels: int) -> Image.Image:
    # A file Pillow opens sits at its first frame, and only that frame is decoded (counting an
    # animation's frames would read the whole file).
    if img.format == "JPEG" and max(img.size) > MAX_SIDE:
        img.draft(img.mode, (MAX_SIDE, MAX_SIDE))  # decode at a reduced scale; no full-size copy in memory
    img.load()
    img = ImageOps.exif_transpose(img)  # a new image, so the caller's is never changed
    img = _to_l_or_rgb(img)
    if max(img.size) > MAX_SIDE:
        scale = MAX_SIDE / max(img.size)
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), RESAMPLE,
                         reducing_gap=2.0)
    want = "L" if channels == 1 else "RGB"
    return img if img.mode == want else img.convert(want)


def _to_l_or_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode as "L" or "RGB", transparency composited onto white, deep data scaled to 0..255."""
    mode = img.mode
    if mode in _GRAY_NUMERIC:
        return _scale_numeric(img)
    if mode == "1":
        return img.convert("L")
    has_key = "transparency" in img.info  # a palette or colour-key transparency, as in GIF and PNG
    if mode == "P":
        return _composite(img.convert("RGBA")) if has_key or img.palette.mode == "RGBA" else img.convert("RGB")
    if mode in ("L", "RGB") and has_key:
        return _composite(img.convert("LA" if mode == "L" else "RGBA"))
    if mode in ("L", "RGB"):
        return img
    if mode == "LA":
        return _composite(img)
    if mode == "La":
        # Premultiplied: over white, out = L*A/255 + 255 - A = stored L + 255 - A. Pillow has no La -> LA.
        luma, alpha = (np.asarray(band, dtype=np.int16) for band in img.split())
        return Image.fromarray(np.clip(luma + 255 - alpha, 0, 255).astype(np.uint8))
    if mode in ("RGBA", "RGBa", "PA"):
        return _composite(img if mode == "RGBA" else img.convert("RGBA"))
    # CMYK, YCbCr, LAB, HSV, RGBX and friends: Pillow knows their way to RGB.
    return img.convert("RGB")


def _composite(img: Image.Image) -> Image.Image:
    """LA or RGBA onto the white background, as L or RGB."""
    alpha = img.getchannel("A")
    base_mode = "L" if img.mode == "LA" else "RGB"
    background = Image.new(base_mode, img.size, (BACKGROUND,) * len(base_mode))
    background.paste(img.convert(base_mode), mask=alpha)
    return background


def _scale_numeric(img: Image.Image) -> Image.Image:
    """16-bit, 32-bit and float grayscale to 8 bits by the rule in the module docstring."""
    data = np.asarray(img)
    if img.mode.startswith("I;16"):
        return Image.fromarray(_round_u8(data.astype(np.float64) / 257.0))
    data = data.astype(np.float64)
    finite = np.isfinite(data)
    lo, hi = (float(data[finite].min()), float(data[finite].max())) if finite.any() else (0.0, 0.0)
    # +inf is as bright as the brightest finite value, -inf and NaN as dark as the darkest.
    data = np.where(finite, data, np.where(data == np.inf, hi, lo))
    if img.mode == "F" and lo >= 0.0 and hi <= 1.0:
        scaled = data * 255.0
    elif lo >= 0.0 and hi <= 255.0:
        scaled = data
    elif img.mode != "F" and lo >= 0.0 and hi <= 65535.0:
        scaled = data / 257.0
    elif hi > lo:
        scaled = (data - lo) * (255.0 / (hi - lo))
    else:
        scaled = np.zeros_like(data)
    return Image.fromarray(_round_u8(scaled))


def _round_u8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)
