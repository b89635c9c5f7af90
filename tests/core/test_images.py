"""open_image / to_uint8_tensor on the messy images users really have, written to disk in real formats."""

from __future__ import annotations

import io
import random
import re

import numpy as np
import pytest
import torch
from PIL import Image

from perceiver_gui.core import images
from perceiver_gui.core.images import ImageError, open_image, to_uint8_tensor

RED, WHITE = (255, 0, 0), (255, 255, 255)


def pixel(img: Image.Image, xy=(0, 0)):
    return img.getpixel(xy)


def test_rgba_transparent_pixels_become_white_and_opaque_ones_keep_their_colour(tmp_path):
    img = Image.new("RGBA", (4, 2), (0, 0, 255, 0))  # fully transparent blue
    img.putpixel((1, 0), (255, 0, 0, 255))  # opaque red
    img.putpixel((2, 0), (0, 0, 0, 128))  # half-transparent black -> mid gray
    img.save(tmp_path / "a.png")
    out = open_image(tmp_path / "a.png", channels=3)
    assert out.mode == "RGB" and out.size == (4, 2)
    assert pixel(out, (0, 0)) == WHITE
    assert pixel(out, (1, 0)) == RED
    assert all(abs(v - 127) <= 1 for v in pixel(out, (2, 0)))


def test_palette_image_with_a_transparent_index_composites_it_onto_white(tmp_path):
    img = Image.new("P", (3, 1))
    img.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
    img.putdata([0, 1, 2])
    img.save(tmp_path / "p.gif", transparency=0)
    out = open_image(tmp_path / "p.gif", channels=3)
    assert [pixel(out, (x, 0)) for x in range(3)] == [WHITE, RED, (0, 255, 0)]


def test_la_and_colour_keyed_l_png_composite_onto_white(tmp_path):
    la = Image.merge("LA", [Image.new("L", (2, 1), 10), Image.new("L", (2, 1), 0)])
    la.putpixel((1, 0), (10, 255))
    la.save(tmp_path / "la.png")
    assert np.asarray(open_image(tmp_path / "la.png", channels=1)).ravel().tolist() == [255, 10]
    keyed = Image.new("L", (2, 1), 40)
    keyed.putpixel((1, 0), 90)
    keyed.save(tmp_path / "key.png", transparency=40)
    assert np.asarray(open_image(tmp_path / "key.png", channels=1)).ravel().tolist() == [255, 90]


@pytest.mark.parametrize(
    ("mode", "fmt", "value", "expected_gray"),
    [
        ("1", "png", 1, 255),
        ("L", "png", 77, 77),
        ("L", "jpeg", 77, 77),
        ("I;16", "png", 257 * 200, 200),  # the full 16-bit range maps onto 0..255, not clipped
        ("I;16", "tiff", 65535, 255),
        ("I", "tiff", 100, 100),  # 8-bit data in a 32-bit file stays as it is
        ("I", "tiff", 257 * 60, 60),  # 16-bit data in a 32-bit image is scaled like I;16
        ("F", "tiff", 0.5, 128),  # 0..1 floats
    ],
)
def test_grayscale_and_deep_modes_give_sensible_8_bit_gray(tmp_path, mode, fmt, value, expected_gray):
    path = tmp_path / f"img.{fmt}"
    img = Image.new(mode, (3, 2), value)
    img.save(path)
    gray = open_image(path, channels=1)
    colour = open_image(path, channels=3)
    assert gray.mode == "L" and colour.mode == "RGB" and gray.size == (3, 2)
    assert abs(pixel(gray) - expected_gray) <= 1
    assert all(abs(v - expected_gray) <= 1 for v in pixel(colour))


def test_16_bit_gradient_keeps_its_range_instead_of_clipping():
    ramp = np.linspace(0, 65535, 16, dtype=np.uint16).reshape(1, 16)
    out = np.asarray(open_image(Image.fromarray(ramp), channels=1))
    assert out.min() == 0 and out.max() == 255
    assert (np.diff(out.astype(int)) > 0).all()  # every step still distinct and increasing


def test_float_and_wide_int_images_outside_known_ranges_are_stretched_min_to_max():
    floats = Image.fromarray(np.array([[-3.0, 0.0, 5.0, np.nan, np.inf]], dtype=np.float32))
    assert np.asarray(open_image(floats, channels=1)).ravel().tolist() == [0, 96, 255, 0, 255]
    ints = Image.fromarray(np.array([[-100000, 0, 100000]], dtype=np.int32))
    assert np.asarray(open_image(ints, channels=1)).ravel().tolist() == [0, 128, 255]


@pytest.mark.parametrize(("mode", "fmt", "value", "expected_rgb"), [
    ("CMYK", "jpeg", (0, 0, 0, 0), WHITE),
    ("CMYK", "tiff", (0, 255, 255, 0), RED),
    ("YCbCr", "jpeg", (76, 85, 255), RED),  # Y, Cb, Cr of pure red
    ("LAB", "tiff", (255, 128, 128), WHITE),  # L* 100, a* 0, b* 0 (stored offset by 128)
    ("P", "png", None, RED),
    ("RGB", "webp", RED, RED),
    ("RGB", "bmp", RED, RED),
])
def test_colour_spaces_convert_to_rgb(tmp_path, mode, fmt, value, expected_rgb):
    path = tmp_path / f"img.{fmt}"
    if mode == "P":
        img = Image.new("RGB", (8, 8), RED).convert("P")
    else:
        img = Image.new(mode, (8, 8), value)
    img.save(path)
    out = open_image(path, channels=3)
    assert out.mode == "RGB"
    assert all(abs(a - b) <= 6 for a, b in zip(pixel(out, (4, 4)), expected_rgb, strict=True))


@pytest.mark.parametrize("mode", ["1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr",
                                  "LAB", "HSV", "I;16", "I;16B", "I;16L", "I", "F"])
@pytest.mark.parametrize("channels", [1, 3])
def test_every_pillow_mode_in_memory_becomes_l_or_rgb(mode, channels):
    img = Image.new(mode, (5, 3))
    out = open_image(img, channels=channels)
    assert out.mode == ("L" if channels == 1 else "RGB") and out.size == (5, 3)
    assert img.mode == mode  # the caller's image is left as it was
    assert to_uint8_tensor(out, (3, 5)).shape == (channels, 3, 5)


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (40, 20), (0, 0, 255))
    img.paste(RED, (0, 0, 20, 20))  # left half red, as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    img.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    out = open_image(tmp_path / "phone.jpg", channels=3)
    assert out.size == (20, 40)  # portrait, as the camera meant it
    top, bottom = pixel(out, (10, 5)), pixel(out, (10, 35))
    assert top[0] > 200 and top[2] < 60  # the stored left half is now on top
    assert bottom[2] > 200 and bottom[0] < 60


def test_animated_gif_gives_its_first_frame(tmp_path):
    frames = [Image.new("RGB", (6, 6), c) for c in (RED, (0, 255, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=50, loop=0)
    with Image.open(tmp_path / "anim.gif") as check:
        assert check.n_frames == 3
    assert pixel(open_image(tmp_path / "anim.gif", channels=3)) == RED
    assert pixel(open_image((tmp_path / "anim.gif").read_bytes(), channels=3)) == RED


def test_huge_jpeg_is_reduced_early(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "MAX_SIDE", 64)
    Image.new("RGB", (600, 300), RED).save(tmp_path / "big.jpg")
    out = open_image(tmp_path / "big.jpg", channels=3)
    assert max(out.size) == 64 and out.size == (64, 32)
    Image.new("RGB", (600, 300), RED).save(tmp_path / "big.png")
    assert open_image(tmp_path / "big.png", channels=3).size == (64, 32)


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    Image.new("L", (200, 200)).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 40,000 pixels is now over twice the limit
    with pytest.raises(ImageError, match=r"bomb\.png.*too large to open safely.*decompression bomb"):
        open_image(tmp_path / "bomb.png", channels=3)


def test_truncated_png_is_refused_with_its_name(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, "PNG")
    (tmp_path / "cut.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageError, match=r"cut\.png: the file is truncated") as info:
        open_image(tmp_path / "cut.png", channels=3)
    assert info.value.reason.startswith("the file is truncated")
    assert str(info.value).count(".") >= 1 and "\n" not in str(info.value)


@pytest.mark.parametrize(("name", "content", "reason"), [
    ("notes.png", b"these are my notes, not a picture\n", "not an image file"),
    ("empty.jpg", b"", "not an image file"),
])
def test_non_images_are_refused(tmp_path, name, content, reason):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ImageError, match=re.escape(f"{name}: it is {reason}")):
        open_image(tmp_path / name, channels=3)


def test_missing_file_and_folder_are_refused(tmp_path):
    with pytest.raises(ImageError, match=r"gone\.png: the file does not exist"):
        open_image(tmp_path / "gone.png", channels=1)
    with pytest.raises(ImageError, match="is a folder"):
        open_image(tmp_path, channels=1)


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about the corrupt TIFF tags it skips
def test_damaged_files_never_raise_anything_but_image_error(tmp_path):
    # Flip and cut bytes of valid files in every format; each result is an image or an ImageError.
    rng = random.Random(1)
    noise = Image.fromarray(np.random.default_rng(1).integers(0, 256, (24, 24, 3), dtype=np.uint8))
    originals = []
    for fmt in ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"):
        buf = io.BytesIO()
        noise.save(buf, fmt)
        originals.append(buf.getvalue())
    outcomes = set()
    for i in range(240):
        data = bytearray(originals[i % len(originals)])
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if i % 3 == 0:
            data = data[: rng.randrange(1, len(data))]
        try:
            out = open_image(bytes(data), channels=3)
        except ImageError as exc:
            outcomes.add("refused")
            assert str(exc).startswith("Can't read the image data: ")
        else:
            outcomes.add("decoded")
            assert out.mode == "RGB"
    assert outcomes == {"refused", "decoded"}


def test_to_uint8_tensor_shapes_values_and_order():
    img = Image.new("RGB", (6, 4), (10, 20, 30))
    img.putpixel((5, 0), (200, 100, 50))  # top right
    t = to_uint8_tensor(img, (4, 6))
    assert t.dtype == torch.uint8 and t.shape == (3, 4, 6) and t.is_contiguous()
    assert t[:, 0, 5].tolist() == [200, 100, 50] and t[:, 3, 0].tolist() == [10, 20, 30]
    small = to_uint8_tensor(Image.new("L", (64, 48), 99), (8, 12))
    assert small.shape == (1, 8, 12) and bool((small == 99).all())
    with pytest.raises(ValueError, match="open_image"):
        to_uint8_tensor(Image.new("RGBA", (2, 2)), (2, 2))


def test_same_pixels_whether_from_a_file_bytes_or_a_pil_image(tmp_path):
    noise = Image.fromarray(np.random.default_rng(2).integers(0, 256, (30, 40, 3), dtype=np.uint8))
    noise.save(tmp_path / "n.png")
    a = to_uint8_tensor(open_image(tmp_path / "n.png", channels=3), (16, 16))
    b = to_uint8_tensor(open_image((tmp_path / "n.png").read_bytes(), channels=3), (16, 16))
    c = to_uint8_tensor(open_image(noise, channels=3), (16, 16))
    assert torch.equal(a, b) and torch.equal(a, c)


# -- files that are not regular files are refused, never opened ----------------------------------
def _finishes(fn, seconds: float = 10.0):
    """fn's result, raised exception included, or a failure if it has not returned within `seconds`."""
    import threading

    box: dict = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still waiting after {seconds} s"
    if "error" in box:
        raise box["error"]
    return box["value"]


@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="needs FIFOs")
def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    import os

    os.mkfifo(tmp_path / "pipe.png")
    with pytest.raises(ImageError, match=r"pipe\.png.*named pipe \(FIFO\), not a regular file"):
        _finishes(lambda: open_image(tmp_path / "pipe.png", channels=3))


def test_a_device_and_a_socket_are_refused(tmp_path):
    import socket

    with pytest.raises(ImageError, match="device, not a regular file"):
        _finishes(lambda: open_image("/dev/zero", channels=1))  # would read zeros forever
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(tmp_path / "s.png"))
        with pytest.raises(ImageError, match="socket, not a regular file"):
            _finishes(lambda: open_image(tmp_path / "s.png", channels=1))
    finally:
        sock.close()


def test_a_folder_and_a_missing_file_still_say_so(tmp_path):
    with pytest.raises(ImageError, match="folder"):
        open_image(tmp_path, channels=1)
    with pytest.raises(ImageError, match="does not exist"):
        open_image(tmp_path / "nope.png", channels=1)


# -- crop_to_content ---------------------------------------------------------------------------
def _drawn(shape: str, box: tuple[int, int, int, int], *, side: int = 48, colour=(30, 90, 200)) -> Image.Image:
    from PIL import ImageDraw

    img = Image.new("RGB", (side, side), "white")
    draw = ImageDraw.Draw(img)
    x0, y0, x1, y1 = box
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    else:
        draw.polygon([((x0 + x1) / 2, y0), (x0, y1), (x1, y1)], fill=colour)
    return img


@pytest.mark.parametrize("shape", ["circle", "square", "triangle"])
def test_crop_to_content_makes_a_shape_look_the_same_wherever_and_however_big_it_is_drawn(shape):
    # A small one in a corner and a big one in the middle: cut out, they are nearly the same picture,
    # while the pictures as drawn are far apart.
    small, big = _drawn(shape, (2, 30, 14, 42)), _drawn(shape, (8, 8, 40, 40))
    as_drawn = (to_uint8_tensor(small, (16, 16)).float() - to_uint8_tensor(big, (16, 16)).float()).abs().mean()
    cut = [to_uint8_tensor(images.crop_to_content(img), (16, 16)).float() for img in (small, big)]
    assert (cut[0] - cut[1]).abs().mean() < 0.25 * as_drawn
    assert (cut[0] - cut[1]).abs().mean() < 12  # of 255: the same shape, edges aside


def test_crop_to_content_tells_the_shapes_apart_and_keeps_a_margin_of_background():
    cut = {shape: images.crop_to_content(_drawn(shape, (5, 20, 25, 40))) for shape in ("circle", "square", "triangle")}
    for img in cut.values():
        assert img.size[0] == img.size[1] >= 21
        assert pixel(img, (0, 0)) == (255, 255, 255)  # the margin is the background, not black
    tensors = {k: to_uint8_tensor(v, (16, 16)).float() for k, v in cut.items()}
    assert (tensors["circle"] - tensors["square"]).abs().mean() > 15
    assert (tensors["triangle"] - tensors["square"]).abs().mean() > 15


def test_crop_to_content_near_the_edge_fills_the_missing_side_with_the_background():
    # A 10×20 black bar touching the left and top edges: the 22-pixel square around it (20 + 5 % a side)
    # starts 6 columns left of the picture, and those columns are white, not black.
    img = images.crop_to_content(_drawn("square", (0, 0, 9, 19), colour=(0, 0, 0)))
    assert img.size == (22, 22)
    assert pixel(img, (2, 10)) == (255, 255, 255)  # outside the picture: the background's white
    assert pixel(img, (8, 10)) == (0, 0, 0)  # the bar
    assert pixel(img, (20, 10)) == (255, 255, 255)  # the picture's own white, right of the bar


def test_crop_to_content_leaves_photos_blank_pictures_and_full_frames_alone():
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8), mode="RGB")
    blank = Image.new("L", (20, 20), 240)
    full = _drawn("square", (0, 0, 47, 47))
    for img in (photo, blank, full):
        assert images.crop_to_content(img) is img
    gray = images.crop_to_content(_drawn("circle", (10, 10, 20, 20)).convert("L"))
    assert gray.mode == "L" and gray.size[0] < 20  # gray pictures are cut the same way


def test_crop_to_content_cuts_out_a_big_object_in_a_corner():
    # A square filling 23 of 32 pixels from the top-left corner covers a third of the border.
    img = images.crop_to_content(_drawn("square", (0, 0, 22, 22), side=32))
    assert img.size == (26, 26) and pixel(img, (5, 5)) == (30, 90, 200)
