"""dlspec.readers: every reader of a user's file (images, .npy, .npz, CSV, text, IDX) against the reference
(numpy.load, Pillow's own conversions, Python's csv and float, the raw 16-bit values), and the one-line
refusals of hostile files — decompression bombs, lying headers, zip bombs, FIFOs, huge CSV files — checked
before anything is allocated: the huge cases run under an address-space limit (RLIMIT_AS) far below what
they claim, or are measured with tracemalloc.  The property test at the end feeds random bytes and random
valid-looking headers to every reader, in a process of bounded memory."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import textwrap
import tracemalloc
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dlspec import readers
from dlspec.readers import CsvReader, ReadError, read_image, read_npy, read_npz, read_text

Image = pytest.importorskip("PIL.Image")

REPO = Path(__file__).resolve().parent.parent
MiB = 2**20


def bounded(script: str, limit: int = 1536 * MiB, timeout: float = 120, env: dict[str, str] | None = None,
            args: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """script in a fresh Python of at most `limit` bytes of address space (a huge allocation fails there), with
    a timeout that only keeps a hang from stopping the suite (as test_run_robust's bounded_subprocess)."""
    pre = f"import resource; resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))\n"
    return subprocess.run([sys.executable, "-c", pre + textwrap.dedent(script), *args], capture_output=True,
                          text=True, timeout=timeout, cwd=str(REPO), env={**os.environ, **(env or {})})


class Peak:
    """The peak of Python-visible allocations (numpy's included) inside a `with`."""

    def __enter__(self) -> Peak:
        tracemalloc.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bytes = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()


def refused(fn: Any, *words: str, kind: str | None = None) -> ReadError:
    with pytest.raises(ReadError) as e:
        fn()
    text = str(e.value)
    assert "\n" not in text and all(w in text for w in words), text
    assert kind is None or e.value.kind == kind, (e.value.kind, text)
    return e.value


# --- hostile images, written by hand ------------------------------------------------------------------


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def png_header(w: int, h: int, depth: int = 8, color: int = 0, data: bytes = b"") -> bytes:
    """A PNG whose IHDR says w×h (the pixels need not follow)."""
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(data)) + _chunk(b"IEND", b""))


def gif_header(w: int, h: int) -> bytes:
    """A GIF whose logical screen and first image are w×h."""
    return (b"GIF89a" + struct.pack("<HHBBB", w, h, 0, 0, 0) + b"," + struct.pack("<HHHHB", 0, 0, w, h, 0)
            + b"\x02\x02\x44\x01\x00;")


def tiff_header(w: int, h: int, bits: int = 8, samples: int = 1, photometric: int = 1, compression: int = 1,
                tail: bytes = b"\0" * 16) -> bytes:
    """A little-endian TIFF whose one IFD says w×h, one strip at the end."""
    entries = [(256, 4, 1, w), (257, 4, 1, h), (258, 3, 1, bits), (259, 3, 1, compression), (262, 3, 1, photometric),
               (273, 4, 1, 0), (277, 3, 1, samples), (278, 4, 1, h), (279, 4, 1, len(tail))]
    ifd_size = 2 + 12 * len(entries) + 4
    offset = 8 + ifd_size
    out = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        out += struct.pack("<HHII", tag, typ, count, offset if tag == 273 else value)
    return out + b"\0\0\0\0" + tail


@pytest.mark.parametrize("name, data, size", [
    ("bomb.png", png_header(20000, 20000), "20000×20000"),
    ("bomb16.png", png_header(20000, 20000, depth=16), "20000×20000"),
    ("bomb.gif", gif_header(65535, 65535), "65535×65535"),
    ("bomb.tif", tiff_header(100000, 100000), "100000×100000"),
])
def test_decompression_bombs_are_refused_from_the_header(tmp_path: Path, name: str, data: bytes, size: str) -> None:
    """Pillow raised DecompressionBombError (an internal error); now the pixel bound, from the header alone."""
    path = tmp_path / name
    path.write_bytes(data)
    with Peak() as peak:
        refused(lambda: read_image(str(path), 1, (28, 28)), f"is a {size} image", "more than 67,108,864 pixels",
                "DLSPEC_MAX_IMAGE_PIXELS", kind="bound")
    assert peak.bytes < 4 * MiB  # plugin imports included; the bombs claim gigabytes


def test_the_pixel_bound_is_raisable_and_applies_below_pillows(tmp_path: Path, monkeypatch: Any) -> None:
    path = tmp_path / "a.png"
    Image.fromarray(np.arange(100 * 120, dtype=np.uint32).reshape(100, 120).astype(np.uint8)).save(path)
    monkeypatch.setenv("DLSPEC_MAX_IMAGE_PIXELS", "11999")
    refused(lambda: read_image(str(path), 1), "is a 120×100 image (12,000 pixels): more than 11,999 pixels")
    monkeypatch.setenv("DLSPEC_MAX_IMAGE_PIXELS", "12000")
    np.testing.assert_array_equal(read_image(str(path), 1)[:, :, 0], np.asarray(Image.open(path), dtype=np.float32))
    # raised beyond Pillow's own bomb limit (2 × 89 million): the header is read, and the damage shown
    monkeypatch.setenv("DLSPEC_MAX_IMAGE_PIXELS", str(10**9))
    (tmp_path / "big.png").write_bytes(png_header(20000, 20000))
    refused(lambda: read_image(str(tmp_path / "big.png"), 1, (8, 8)), "cannot read", "big.png", kind="file")


def test_truncated_and_corrupt_images_are_one_line(tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)).save(good)
    (tmp_path / "cut.png").write_bytes(good.read_bytes()[:100])
    refused(lambda: read_image(str(tmp_path / "cut.png"), 1), "cannot read", "cut.png", "truncated", kind="file")
    (tmp_path / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    refused(lambda: read_image(str(tmp_path / "junk.png"), 1), "cannot read", "junk.png", kind="file")
    (tmp_path / "zero.gif").write_bytes(gif_header(0, 5))
    refused(lambda: read_image(str(tmp_path / "zero.gif"), 1), "zero.gif")
    (tmp_path / "a.eps").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n")
    refused(lambda: read_image(str(tmp_path / "a.eps"), 1), "cannot read", kind="file")  # never Ghostscript


def _gray16(tmp_path: Path, raw: np.ndarray, name: str, fmt: str = "PNG") -> Path:
    path = tmp_path / name
    Image.fromarray(raw).save(path, fmt)
    return path


def test_16_bit_images_are_read_at_their_real_scale(tmp_path: Path) -> None:
    """A 1.5 % gray 16-bit PNG was read as pure white (Pillow's L conversion clips); now x / 65535 maps to
    0..1 as 8-bit x / 255 does: the reader's 8-bit scale value is raw / 257."""
    raw = np.full((28, 28), int(0.015 * 65535), dtype=np.uint16)
    path = _gray16(tmp_path, raw, "gray.png")
    assert Image.open(path).mode == "I;16"
    assert np.asarray(Image.open(path).convert("L")).max() == 255  # the saturation this fixes
    got = read_image(str(path), 1)
    np.testing.assert_allclose(got[:, :, 0] / 255, raw / 65535, rtol=1e-6)
    rng = np.random.default_rng(0)
    cases = {"I;16": (rng.integers(0, 65536, (9, 7), dtype=np.uint16), "PNG"),
             "I;16B": (rng.integers(0, 65536, (9, 7)).astype(">u2"), "TIFF"),
             "I": (rng.integers(0, 65536, (9, 7)).astype(np.int32), "TIFF")}
    for mode, (values, fmt) in cases.items():
        path = _gray16(tmp_path, values, f"{mode.replace(';', '')}.{fmt.lower()}", fmt)
        assert Image.open(path).mode == mode
        raw = np.asarray(Image.open(path)).astype(np.float64)
        np.testing.assert_array_equal(raw, values)
        gray = read_image(str(path), 1)
        assert gray.shape == (9, 7, 1) and gray.dtype == np.float32
        np.testing.assert_allclose(gray[:, :, 0] / 255, raw / 65535, rtol=1e-6, atol=1e-7)
        rgb = read_image(str(path), 3)  # gray repeated, as converting to RGB does
        assert rgb.shape == (9, 7, 3) and all(np.array_equal(rgb[:, :, c], gray[:, :, 0]) for c in range(3))
        np.testing.assert_array_equal(read_image(str(path), 1, form="uint8")[:, :, 0], np.rint(raw / 257))
    # resized: a constant image stays its value
    flat = _gray16(tmp_path, np.full((40, 30), 12345, np.uint16), "flat.png")
    np.testing.assert_allclose(read_image(str(flat), 1, (8, 8)), 12345 / 257, rtol=1e-6)
    np.testing.assert_array_equal(read_image(str(flat), 1, (8, 8), form="uint8"), round(12345 / 257))
    # a 32-bit image beyond 16 bits is refused, not clipped
    wide = _gray16(tmp_path, np.full((4, 4), 70000, np.int32), "wide.tif", "TIFF")
    refused(lambda: read_image(str(wide), 1), "32-bit integer image", "70000", kind="value")


def test_other_modes_read_as_pillow_converts_them(tmp_path: Path) -> None:
    """Palette, LA, RGBA, CMYK and 1-bit images: the same pixels as Pillow's L and RGB conversions."""
    rng = np.random.default_rng(1)
    rgb = Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8))
    images = {"P.png": rgb.convert("P"), "LA.png": rgb.convert("LA"), "RGBA.png": rgb.convert("RGBA"),
              "CMYK.tif": rgb.convert("CMYK"), "CMYK.jpg": rgb.convert("CMYK"), "1.png": rgb.convert("1"),
              "1.bmp": rgb.convert("1"), "L.gif": rgb.convert("L"), "RGB.webp": rgb, "RGB.ppm": rgb}
    for name, im in images.items():
        path = tmp_path / name
        im.save(path)
        for channels, mode in ((1, "L"), (3, "RGB")):
            with Image.open(path) as ref:
                want = np.asarray(ref.convert(mode), dtype=np.float32).reshape(12, 10, channels)
                small = np.asarray(ref.convert(mode).resize((5, 6), Image.Resampling.BILINEAR), dtype=np.uint8)
            np.testing.assert_array_equal(read_image(str(path), channels), want, err_msg=name)
            np.testing.assert_array_equal(read_image(str(path), channels, (6, 5), form="uint8"),
                                          small.reshape(6, 5, channels), err_msg=name)


# --- .npy ---------------------------------------------------------------------------------------------


def npy_bytes(descr: Any, shape: tuple[int, ...], data: bytes = b"", fortran: bool = False) -> bytes:
    """An .npy file whose header says anything (numpy's own writer does not check the shape against data)."""
    import numpy.lib.format as npy

    out = io.BytesIO()
    npy.write_array_header_1_0(out, {"descr": descr, "fortran_order": fortran, "shape": shape})
    return out.getvalue() + data


@pytest.mark.parametrize("a", [
    np.arange(24, dtype=">f4").reshape(2, 3, 4), np.arange(6, dtype=">i8").reshape(3, 2),
    np.asfortranarray(np.arange(12, dtype=np.float64).reshape(3, 4)), np.array([True, False]),
    np.arange(5, dtype=np.uint16), np.zeros((0, 3), np.float32), np.float32(2.5), np.arange(4, dtype=np.float16),
])
def test_npy_equals_numpy_load(tmp_path: Path, a: np.ndarray) -> None:
    """Big-endian arrays (an internal error in torch.from_numpy) are converted to this machine's order."""
    path = tmp_path / "a.npy"
    np.save(path, a)
    got, want = read_npy(str(path)), np.load(path)
    assert got.shape == want.shape and got.dtype == want.dtype.newbyteorder("=") and got.flags.writeable
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("name, data, words", [
    ("negative.npy", npy_bytes("<f4", (-1, 28, 28)), ["is damaged", "shape (-1, 28, 28)", "negative size"]),
    ("liar.npy", npy_bytes("<f4", (800000000000, 1, 28, 28), bytes(100)),  # 2.79 PiB asked for
     ["is damaged", "claims shape (800000000000, 1, 28, 28) float32 (2,508,800,000,000,000 bytes)",
      "the file holds 100 bytes of data"]),
    ("short.npy", npy_bytes("<f8", (10,), bytes(79)), ["the file holds 79 bytes"]),
    ("object.npy", npy_bytes("|O", (2,), bytes(16)), ["holds object values, not numbers"]),
    ("struct.npy", npy_bytes([("a", "<f4"), ("b", "<i4")], (2,), bytes(16)), ["not numbers"]),
    ("void.npy", npy_bytes("|V8", (2,), bytes(16)), ["holds |V8 values, not numbers"]),
    ("text.npy", npy_bytes("<U3", (2,), bytes(24)), ["not numbers"]),
    ("complex.npy", npy_bytes("<c8", (2,), bytes(16)), ["holds complex64 values, not numbers"]),
    ("deep.npy", npy_bytes("<f4", (1,) * 40, bytes(4)), ["has 40 dimensions: more than 32"]),
    ("wide.npy", npy_bytes(">f8", (0, 99, 99, 428116, 274769101)), ["claims shape (0, 99, 99, 428116, 274769101), "
                                                                   "larger than any array can be"]),  # found by the
    # property test below: numpy.load raises ValueError for it
    ("csv.npy", b"1,2,3\n", ["is not a .npy array", "\\x93NUMPY"]),
    ("empty.npy", b"", ["is not a .npy array"]),
    ("badheader.npy", b"\x93NUMPY\x01\x00\x10\x00{'descr': 1}     \n", ["is damaged: its .npy header cannot be read"]),
])
def test_hostile_npy_files_are_one_line(tmp_path: Path, name: str, data: bytes, words: list[str]) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with Peak() as peak:
        refused(lambda: read_npy(str(path)), name, *words)
    assert peak.bytes < 4 * MiB  # plugin imports included; the bombs claim gigabytes


def test_the_array_bound(tmp_path: Path, monkeypatch: Any) -> None:
    np.save(tmp_path / "a.npy", np.zeros(300, np.float32))
    monkeypatch.setenv("DLSPEC_MAX_ARRAY_BYTES", "1000")
    refused(lambda: read_npy(str(tmp_path / "a.npy")), "(1,200 bytes)", "more than 1000 bytes",
            "DLSPEC_MAX_ARRAY_BYTES", kind="bound")
    monkeypatch.setenv("DLSPEC_MAX_ARRAY_BYTES", "1200")
    assert read_npy(str(tmp_path / "a.npy")).shape == (300,)


def test_non_finite_values_are_counted_and_located() -> None:
    a = np.zeros((2, 3, 4), np.float16)
    a[1, 2, 0] = np.inf  # float16 holds inf: it was drawn and predicted silently
    a[1, 2, 3] = -np.inf
    refused(lambda: readers.check_finite(a, "x.npy"), "x.npy holds 2 values that are not a finite number",
            "the first inf at [1, 2, 0]", kind="finite")
    b = np.ones(5)
    b[3] = 1e300  # inf once float32
    refused(lambda: readers.check_finite(b, "b"), "holds 1 value that is not a finite number", "at [3]")
    readers.check_finite(np.ones((2, 2), np.float32), "fine")
    readers.check_finite(np.arange(3), "ints")


@pytest.mark.parametrize("ids, words", [
    (np.array([[3, 9223372036854775807]]), ["the id 9223372036854775807 at [0, 1]", "0 to 61 (an Embedding)"]),
    (np.array([[3, -5]]), ["the id -5 at [0, 1]"]),
    (np.array([62]), ["the id 62 at [0]"]),
    (np.array([2**64 - 1], np.uint64), ["the id 18446744073709551615"]),
    (np.array([1.5]), ["1.5 at [0]: token ids are whole numbers"]),
    (np.array([np.nan]), ["not a finite number"]),
])
def test_token_ids_outside_the_vocabulary(ids: np.ndarray, words: list[str]) -> None:
    refused(lambda: readers.check_ids(ids, "t.npy", 62, "an Embedding"), "t.npy holds", *words)


def test_token_ids_inside_pass() -> None:
    readers.check_ids(np.array([[0, 61]]), "t", 62, "an Embedding")
    readers.check_ids(np.array([0.0, 61.0]), "t", 62, "an Embedding")
    refused(lambda: readers.check_ids(np.array([2**64 - 1], np.uint64), "t", None, ""), "0 and above (int64)")


# --- .npz ---------------------------------------------------------------------------------------------


def test_npz_equals_numpy_load(tmp_path: Path) -> None:
    arrays = {"x": np.arange(12, dtype=">f4").reshape(3, 4), "y": np.array([1, 2, 3]), "z": np.zeros(2)}
    np.savez_compressed(tmp_path / "a.npz", **arrays)
    seen: list[Any] = []
    stored, got = read_npz(str(tmp_path / "a.npz"), ["x", "y", "missing"], lambda s, h: seen.append((s, h)))
    assert stored == ["x", "y", "z"] and sorted(got) == ["x", "y"]
    assert seen[0][1]["x"].shape == (3, 4) and seen[0][1]["x"].dtype == np.dtype(">f4")
    with np.load(tmp_path / "a.npz") as ref:
        for k in got:
            np.testing.assert_array_equal(got[k], ref[k])


def test_npz_zip_bomb_is_refused_from_the_declared_sizes(tmp_path: Path) -> None:
    """A 64 MiB member of zeros deflates to 64 KiB; under a 1 MiB array bound it is refused from its header,
    and never inflated: the process's address space is far below what inflating it and a copy would take."""
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("x_train.npy", npy_bytes("<f4", (16 * MiB,), bytes(64 * MiB)))
    assert path.stat().st_size < MiB
    p = bounded(f"""
        from dlspec.readers import ReadError, read_npz
        try:
            read_npz({str(path)!r}, ["x_train"])
        except ReadError as e:
            print("REFUSED", e)
    """, limit=400 * MiB, env={"DLSPEC_MAX_ARRAY_BYTES": str(MiB)})
    assert "REFUSED" in p.stdout and "its array 'x_train' claims shape (16777216,) float32 (67,108,864 bytes): " \
        "more than 1.0 MiB" in p.stdout and "DLSPEC_MAX_ARRAY_BYTES" in p.stdout, p.stdout + p.stderr


def test_npz_member_lying_about_its_size(tmp_path: Path) -> None:
    path = tmp_path / "liar.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x.npy", npy_bytes("<f8", (10**12,), bytes(16)))
    with Peak() as peak:
        refused(lambda: read_npz(str(path), ["x"]), "is damaged: its array 'x' claims shape (1000000000000,)",
                "but the archive holds 16 bytes for it")
    assert peak.bytes < 4 * MiB  # plugin imports included; the bombs claim gigabytes


def test_npz_table_of_contents_bound(tmp_path: Path) -> None:
    """An end record that declares a central directory of 4 GiB is refused before zipfile reads it."""
    path = tmp_path / "a.npz"
    np.savez(path, x=np.zeros(3))
    data = bytearray(path.read_bytes())
    i = data.rfind(b"PK\x05\x06")
    data[i + 12:i + 16] = struct.pack("<I", 0xFFFFFFF0)
    path.write_bytes(bytes(data))
    refused(lambda: read_npz(str(path), ["x"]), "table of contents of 4,294,967,280 bytes", kind="bound")


def test_npz_damaged_data(tmp_path: Path) -> None:
    path = tmp_path / "a.npz"
    np.savez_compressed(path, x=np.arange(1000.0))
    data = bytearray(path.read_bytes())
    data[200:260] = bytes(60)  # inside the deflated member: a bad stream or a bad CRC
    path.write_bytes(bytes(data))
    refused(lambda: read_npz(str(path), ["x"]), "a.npz")
    path.write_bytes(b"PK\x03\x04 not a zip")
    refused(lambda: read_npz(str(path), ["x"]), "cannot read", "as a .npz file")
    np.savez(path, x=np.zeros(3))
    path.write_bytes(b"\0" + path.read_bytes()[1:])  # zipfile would still find it from the end; numpy.load not
    refused(lambda: read_npz(str(path), ["x"]), "is not a .npz file: it is not a zip archive (it starts with "
            "b'\\x00K\\x03\\x04')")


# --- CSV ----------------------------------------------------------------------------------------------


def table(path: Path, **kw: Any) -> Any:
    with CsvReader(str(path), **kw) as r:
        return r.table(False, list(range(r.width)), [str(j) for j in range(r.width)])


def test_csv_values_equal_numpy(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(9000, 5)) * 1e3  # three chunks of 4096 rows
    np.savetxt(tmp_path / "a.csv", x, delimiter=",")
    t = table(tmp_path / "a.csv")
    np.testing.assert_array_equal(t.x, np.loadtxt(tmp_path / "a.csv", delimiter=",").astype(np.float32))
    assert t.lines == list(range(1, 9001)) and t.x.dtype == np.float32


def test_csv_bom_blank_lines_quotes_and_header(tmp_path: Path) -> None:
    p = tmp_path / "a.csv"
    p.write_bytes("\ufeffa,b,label\r\n1, 2 ,x\r\n\r\n\"3\",4,\"y, z\"\r\n".encode())
    with CsvReader(str(p)) as r:
        assert r.head == [(1, ["a", "b", "label"]), (2, ["1", "2", "x"]), (4, ["3", "4", "y, z"])]
        t = r.table(True, [0, 1], ["'a'", "'b'"], text=2)
    assert t.lines == [2, 4] and t.text == ["x", "y, z"]
    np.testing.assert_array_equal(t.x, [[1, 2], [3, 4]])


@pytest.mark.parametrize("text, words, kind", [
    ("", ["is empty"], "file"),
    ("\n\n  \n", ["is empty"], "file"),
    ("1,2,3\n4,5\n", ["line 2 has 2 fields but the first row has 3"], "ragged"),
    ("1,2\n3,oops\n", ["line 2, column 1: 'oops' is not a number"], "value"),
    ("1,2\n3,\n", ["line 2, column 1: the value is missing"], "value"),
    ("1,2\nnan,4\n", ["line 2, column 0: 'nan' is not a finite number"], "finite"),
    ("1,2\n3,-inf\n", ["'-inf' is not a finite number"], "finite"),
    ("1,2\n3,1e39\n", ["'1e39' is not a finite number"], "finite"),
    ("1,\"" + "2" * 200_000 + "\"\n", ["line 1: field larger than field limit (131072)"], "file"),
])
def test_csv_refusals(tmp_path: Path, text: str, words: list[str], kind: str) -> None:
    p = tmp_path / "t.csv"
    p.write_text(text)
    refused(lambda: table(p), "t.csv", *words, kind=kind)


def test_csv_not_utf8(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    p.write_bytes(b"1,2\n\xff\xfe,3\n")
    refused(lambda: table(p), "is not UTF-8 text (line 2, byte 1: invalid start byte)", kind="encoding")


def test_csv_bounds(tmp_path: Path, monkeypatch: Any) -> None:
    p = tmp_path / "t.csv"
    p.write_text("1,2,3\n" * 10)
    monkeypatch.setenv("DLSPEC_MAX_CSV_BYTES", "59")
    refused(lambda: table(p), "has 60 bytes: more than 59", "DLSPEC_MAX_CSV_BYTES", kind="bound")
    monkeypatch.delenv("DLSPEC_MAX_CSV_BYTES")
    monkeypatch.setenv("DLSPEC_MAX_CSV_ROWS", "8")
    refused(lambda: table(p), "has more than 8 rows", "DLSPEC_MAX_CSV_ROWS", kind="bound")
    monkeypatch.setenv("DLSPEC_MAX_CSV_ROWS", "9")  # the head row may be a header: one more
    assert table(p).x.shape == (10, 3)
    monkeypatch.setenv("DLSPEC_MAX_CSV_COLUMNS", "2")
    refused(lambda: table(p), "line 1 has 3 fields: more than 2", "DLSPEC_MAX_CSV_COLUMNS", kind="bound")
    monkeypatch.delenv("DLSPEC_MAX_CSV_COLUMNS")
    refused(lambda: table(p, max_rows=4), "has more than 4 rows; at most 4 are read at a time")
    p.write_text("1," * (readers.CSV_LINE // 2 + 1) + "\n")
    refused(lambda: table(p), "line 1 is longer than 16,777,216 bytes", kind="bound")


def test_a_huge_all_zero_csv_streams_in_bounded_memory(tmp_path: Path) -> None:
    """Read as text cells first, an all-zero CSV took about 6 bytes of memory per byte of file before
    anything was refused (5.7 GB for a large one); now the rows bound stops it while it streams, in an
    address space far smaller than its text as Python strings."""
    p = tmp_path / "zeros.csv"
    line = ",".join(["0"] * 500) + "\n"
    with open(p, "w") as f:
        for _ in range(60):
            f.write(line * 1000)  # 60 MB, 30 million cells: some 2 GB as Python lists of strings
    out = bounded(f"""
        from dlspec.readers import CsvReader, ReadError
        try:
            with CsvReader({str(p)!r}) as r:
                r.table(False, list(range(r.width)), [str(j) for j in range(r.width)])
        except ReadError as e:
            print("REFUSED", e)
    """, limit=700 * MiB, env={"DLSPEC_MAX_CSV_ROWS": "20000"})
    assert "REFUSED" in out.stdout and "has more than 20,000 rows" in out.stdout, out.stdout + out.stderr


# --- text ---------------------------------------------------------------------------------------------


def test_text_equals_pythons_universal_newlines(tmp_path: Path, monkeypatch: Any) -> None:
    p = tmp_path / "t.txt"
    p.write_bytes("a\r\nb\rc\nd é".encode())
    with open(p, encoding="utf-8") as f:
        assert read_text(str(p)) == f.read()
    monkeypatch.setenv("DLSPEC_MAX_TEXT_BYTES", "5")
    refused(lambda: read_text(str(p)), "has 11 bytes: more than 5", "DLSPEC_MAX_TEXT_BYTES", kind="bound")
    monkeypatch.delenv("DLSPEC_MAX_TEXT_BYTES")
    p.write_bytes(b"ab\xffc")
    refused(lambda: read_text(str(p)), "is not UTF-8 text (byte 2", kind="encoding")


# --- FIFOs, devices and folders where a file is read ------------------------------------------------


def test_fifos_devices_and_folders_are_refused_without_blocking(tmp_path: Path) -> None:
    """Each reader opened a FIFO and waited for a writer forever; now it is refused without blocking (in a
    subprocess with a timeout, so that a regression fails instead of hanging the suite)."""
    for n in ("f.png", "f.npy", "f.npz", "f.csv", "f.txt"):
        os.mkfifo(tmp_path / n)
    out = bounded(f"""
        import os
        from dlspec.readers import CsvReader, ReadError, read_image, read_npy, read_npz, read_text
        d = {str(tmp_path)!r}
        calls = [lambda p: read_image(p, 1), read_npy, lambda p: read_npz(p, ["x"]), CsvReader, read_text]
        for name, call in zip(("f.png", "f.npy", "f.npz", "f.csv", "f.txt"), calls):
            for p in (os.path.join(d, name), "/dev/null", d):
                try:
                    call(p)
                    print("READ", p)
                except ReadError as e:
                    print("REFUSED", e)
    """, timeout=60)
    lines = out.stdout.splitlines()
    assert len(lines) == 15 and all(line.startswith("REFUSED") for line in lines), out.stdout + out.stderr
    assert sum("is a FIFO (named pipe)" in line for line in lines) == 5
    assert sum("/dev/null is a character device" in line for line in lines) == 5
    assert sum("is a folder" in line for line in lines) == 5


# --- dlspec show --npy / --image -------------------------------------------------------------------------

IMAGE_SPEC = "# a small CNN\ninput: [1, 28, 28]\nlayers:\n  - Conv2d: {out_channels: 2, kernel_size: 3}\n  - Flatten\n"
IDS_SPEC = ("# ids\ninput: {shape: [16], dtype: long}\nlayers:\n  - Embedding: {num_embeddings: 62, embedding_dim: 4}\n"
            "  - Flatten\n")


def show(tmp_path: Path, spec: str, *argv: Any, capsys: Any = None) -> tuple[int, str, str]:
    """`dlspec show` of a spec without data (fresh weights): in-process, or (no capsys: a FIFO may be read) in a
    subprocess, where a hang fails on its timeout."""
    (tmp_path / "spec.yaml").write_text(spec)
    argv = ("show", str(tmp_path / "spec.yaml"), *map(str, argv), "--out", str(tmp_path / "out"))
    if capsys is not None:
        from dlspec import cli

        capsys.readouterr()
        rc = cli.main(list(argv))
        c = capsys.readouterr()
        return rc, c.out, c.err
    p = subprocess.run([sys.executable, "-m", "dlspec", *argv], capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


def test_show_refuses_hostile_npy_and_images_in_one_line(tmp_path: Path, capsys: Any) -> None:
    """Each was an internal error (exit 70), a hang, or a picture of inf drawn silently."""
    pytest.importorskip("torch")
    (tmp_path / "bomb.png").write_bytes(png_header(20000, 20000))
    np.save(tmp_path / "inf.npy", np.full((1, 28, 28), np.inf, np.float16))
    np.save(tmp_path / "zero.npy", np.zeros((0, 1, 28, 28), np.float32))
    (tmp_path / "liar.npy").write_bytes(npy_bytes("<f4", (800000000000, 1, 28, 28), bytes(100)))
    os.mkfifo(tmp_path / "fifo.npy")
    os.mkfifo(tmp_path / "fifo.png")
    cases = [(("--image", "bomb.png"), "bomb.png is a 20000×20000 image (400,000,000 pixels): more than 67,108,864 "
                                       "pixels, the bound for an image (DLSPEC_MAX_IMAGE_PIXELS=N raises it)"),
             (("--npy", "inf.npy"), "inf.npy holds 784 values that are not a finite number (nan, infinite or beyond "
                                    "float32), the first inf at [0, 0, 0]"),
             (("--npy", "zero.npy"), "zero.npy holds no sample: its shape is [0, 1, 28, 28]"),
             (("--npy", "liar.npy"), "liar.npy is damaged: its header claims shape (800000000000, 1, 28, 28)"),
             (("--npy", "fifo.npy"), "fifo.npy is a FIFO (named pipe), not a .npy file"),
             (("--image", "fifo.png"), "fifo.png is a FIFO (named pipe), not an image file")]
    for (flag, name), message in cases:
        rc, out, err = show(tmp_path, IMAGE_SPEC, flag, tmp_path / name, capsys=None if "fifo" in name else capsys)
        assert rc == 2 and err.startswith("dlspec show: ") and message in err and len(err.splitlines()) == 1, err
    for ids, where in (([3] * 15 + [2**63 - 1], "9223372036854775807 at [15]"), ([-1] * 16, "-1 at [0]")):
        np.save(tmp_path / "ids.npy", np.array(ids))
        rc, out, err = show(tmp_path, IDS_SPEC, "--npy", tmp_path / "ids.npy", capsys=capsys)
        assert rc == 2 and err == f"dlspec show: {tmp_path / 'ids.npy'} holds the id {where}: the model's ids are 0 " \
                                  "to 61 (layer embed1 Embedding has num_embeddings 62)\n", err


def test_show_reads_big_endian_and_16_bit_files_as_their_values(tmp_path: Path, capsys: Any) -> None:
    """A big-endian .npy (an internal error before) shows what its native twin shows; a 16-bit PNG shows what
    the .npy of its raw values / 65535 shows (it was drawn as saturated white)."""
    pytest.importorskip("torch")
    x = np.random.default_rng(0).random((1, 28, 28)).astype(np.float32)
    np.save(tmp_path / "le.npy", x)
    np.save(tmp_path / "be.npy", x.astype(">f4"))
    raw = (x[0] * 0.02 * 65535).round().astype(np.uint16)  # a dark image: 2 % of the range at most
    Image.fromarray(raw).save(tmp_path / "deep.png")
    np.save(tmp_path / "deep.npy", (raw / 65535).astype(np.float32)[None])
    tables = {}
    for flag, name in (("--npy", "le.npy"), ("--npy", "be.npy"), ("--image", "deep.png"), ("--npy", "deep.npy")):
        rc, out, err = show(tmp_path, IMAGE_SPEC, flag, tmp_path / name, capsys=capsys)
        assert rc == 0, err
        tables[name] = out.splitlines()[1:4]  # the statistics of each layer
    assert tables["le.npy"] == tables["be.npy"] and tables["deep.png"] == tables["deep.npy"]


# --- the property test: random bytes and random headers to every reader -------------------------------

PROPERTY_SCRIPT = r'''
import io, os, struct, sys, tempfile, traceback, warnings, zipfile, zlib
import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st
from PIL import Image

from dlspec.data.base import DataError
from dlspec.data.idx import read_idx
from dlspec.readers import CsvReader, ReadError, read_image, read_npy, read_npz, read_text

EXAMPLES = int(sys.argv[1])
D = tempfile.mkdtemp()
SET = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
               suppress_health_check=list(HealthCheck))


def put(name, data):
    path = os.path.join(D, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def chunk(tag, data):
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


sizes = st.one_of(st.integers(0, 64), st.integers(0, 2**16), st.integers(0, 2**32 - 1))
small = st.integers(0, 64)


@st.composite
def image_files(draw):
    kind = draw(st.sampled_from(["png", "gif", "bmp", "tiff", "jpeg", "bytes", "valid"]))
    body = draw(st.binary(max_size=400))
    w, h = draw(sizes), draw(sizes)
    if kind == "valid":  # a real image of a random mode, size and format
        mode = draw(st.sampled_from(["1", "L", "P", "LA", "RGB", "RGBA", "CMYK", "I;16", "I"]))
        fmt = draw(st.sampled_from({"1": ["png", "bmp", "tiff", "gif"], "L": ["png", "jpeg", "bmp", "gif", "tiff"],
                                    "P": ["png", "gif", "bmp"], "LA": ["png", "tiff"], "RGB": ["png", "jpeg", "tiff"],
                                    "RGBA": ["png", "tiff"], "CMYK": ["jpeg", "tiff"], "I;16": ["png", "tiff"],
                                    "I": ["tiff"]}[mode]))
        w, h = draw(st.integers(1, 40)), draw(st.integers(1, 40))
        seed = draw(st.integers(0, 2**32 - 1))
        rgb = Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))
        if mode in ("I;16", "I"):
            im = Image.fromarray(np.random.default_rng(seed).integers(0, 65536, (h, w)).astype(
                np.uint16 if mode == "I;16" else np.int32))
        else:
            im = rgb.convert(mode)
        buf = io.BytesIO()
        im.save(buf, fmt.upper())
        return fmt, buf.getvalue()
    if kind == "png":
        depth, color = draw(st.sampled_from([1, 2, 4, 8, 16])), draw(st.sampled_from([0, 2, 3, 4, 6]))
        w, h = min(w, 2**31 - 1), min(h, 2**31 - 1)
        idat = zlib.compress(body) if draw(st.booleans()) else body
        plte = chunk(b"PLTE", bytes(range(48))) if color == 3 else b""
        data = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, 0)) + plte
                + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    elif kind == "gif":
        w, h = w & 0xFFFF, h & 0xFFFF
        data = b"GIF89a" + struct.pack("<HHBBB", w, h, draw(st.integers(0, 255)), 0, 0) + b"," + \
            struct.pack("<HHHHB", 0, 0, w, h, 0) + body + b";"
    elif kind == "bmp":
        bpp = draw(st.sampled_from([1, 4, 8, 16, 24, 32, 0, 7]))
        comp = draw(st.sampled_from([0, 1, 2, 3, 9]))
        hh = draw(st.integers(-2**31, 2**31 - 1))
        info = struct.pack("<IiiHHIIiiII", 40, min(w, 2**31 - 1), hh, 1, bpp, comp, len(body), 0, 0, 0, 0)
        data = b"BM" + struct.pack("<IHHI", 54 + len(body), 0, 0, 54) + info + body
    elif kind == "tiff":
        bits = draw(st.sampled_from([1, 8, 16, 32]))
        spp = draw(st.sampled_from([1, 2, 3, 4]))
        photo = draw(st.sampled_from([0, 1, 2, 3, 5, 6]))
        comp = draw(st.sampled_from([1, 5, 7, 8, 32773]))
        entries = [(256, 4, 1, w), (257, 4, 1, h), (258, 3, 1, bits), (259, 3, 1, comp), (262, 3, 1, photo),
                   (273, 4, 1, 8 + 2 + 12 * 9 + 4), (277, 3, 1, spp), (278, 4, 1, max(h, 1)), (279, 4, 1, len(body))]
        data = b"II*\x00" + struct.pack("<IH", 8, len(entries)) + b"".join(struct.pack("<HHII", *e) for e in entries)
        data += b"\0\0\0\0" + body
    elif kind == "jpeg":
        comps = draw(st.sampled_from([1, 3, 4]))
        sof = struct.pack(">BHHB", 8, h & 0xFFFF, w & 0xFFFF, comps) + b"".join(
            struct.pack(">BBB", i + 1, 0x11, 0) for i in range(comps))
        data = b"\xff\xd8\xff\xc0" + struct.pack(">H", len(sof) + 2) + sof + body + b"\xff\xd9"
    else:
        data = body
    return kind, data


@SET
@given(image_files(), st.sampled_from([1, 3]), st.sampled_from([None, (5, 4)]), st.sampled_from(["float", "uint8"]))
def images(f, channels, size, form):
    kind, data = f
    path = put("i." + ("jpg" if kind == "jpeg" else "img" if kind == "bytes" else kind), data)
    try:
        a = read_image(path, channels, size, form)
    except ReadError as e:
        assert "\n" not in str(e)
        return
    with Image.open(path) as im:
        w, h = im.size
        if im.mode in ("I;16", "I;16B", "I"):
            raw = np.asarray(im).astype(np.float64)
            want = raw / 257 if form == "float" else np.rint(raw / 257)
            want = np.repeat(want[:, :, None], channels, axis=2)
        else:
            want = np.asarray(im.convert("L" if channels == 1 else "RGB")).reshape(h, w, channels)
    assert a.shape == ((size or (h, w)) + (channels,)) and a.dtype == (np.float32 if form == "float" else np.uint8)
    assert np.isfinite(a).all() and a.min() >= 0 and a.max() <= 255
    if size is None:  # the reference: Pillow's conversion, or the raw 16-bit values at their scale
        np.testing.assert_allclose(a, want, rtol=1e-6)


DESCRS = ["<f4", ">f8", "<f2", "|u1", "<i8", ">i2", "|b1", "<u8", "|O", "<c8", "|V4", "<U2", "|S3",
          "[('a', '<f4')]", "('<f4', (2,))", "<M8[s]", "<f16"]


@st.composite
def npy_files(draw):
    import numpy.lib.format as npy
    shape = tuple(draw(st.lists(st.one_of(st.integers(0, 6), st.integers(-3, 2**40)), max_size=draw(
        st.sampled_from([3, 40])))))
    descr = draw(st.sampled_from(DESCRS))
    header = io.BytesIO()
    try:
        d = np.lib.format.descr_to_dtype(eval(descr) if descr[0] in "[(" else descr)
        npy.write_array_header_1_0(header, {"descr": np.lib.format.dtype_to_descr(d), "fortran_order": draw(
            st.booleans()), "shape": shape})
    except Exception:
        header = io.BytesIO(b"\x93NUMPY\x01\x00\x20\x00{'descr': '<f4', 'shape': (1,)}\n")
    data = header.getvalue() + draw(st.binary(max_size=300))
    if draw(st.booleans()):
        data = bytearray(data)
        for i in draw(st.lists(st.integers(0, len(data) - 1), max_size=4)):
            data[i] = draw(st.integers(0, 255))
        data = bytes(data)
    return data if draw(st.integers(0, 9)) else draw(st.binary(max_size=200))


@SET
@given(npy_files())
def npys(data):
    path = put("a.npy", data)
    try:
        a = read_npy(path)
    except ReadError as e:
        assert "\n" not in str(e)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = np.load(path, allow_pickle=False)
    assert a.shape == ref.shape and a.dtype.kind == ref.dtype.kind
    np.testing.assert_array_equal(a, ref.astype(a.dtype))  # float wider than 64 bits: float64, as documented


@st.composite
def npz_files(draw):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))) as z:
        for name in draw(st.lists(st.sampled_from(["x", "y", "x.npy", "y.npy"]), max_size=3, unique=True)):
            z.writestr(name if name.endswith(".npy") else name + ".npy", draw(npy_files()))
    data = bytearray(buf.getvalue())
    for i in draw(st.lists(st.integers(0, max(len(data) - 1, 0)), max_size=3)):
        if data:
            data[i] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(data)))
    return bytes(data[:cut]) if draw(st.integers(0, 4)) == 0 else bytes(data)


@SET
@given(npz_files())
def npzs(data):
    path = put("a.npz", data)
    try:
        stored, got = read_npz(path, ["x", "y"])
    except ReadError as e:
        assert "\n" not in str(e)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with np.load(path, allow_pickle=False) as ref:
            assert stored == list(ref.files)
            for k, v in got.items():
                np.testing.assert_array_equal(v, ref[k].astype(v.dtype))


CELLS = st.sampled_from(["0", "1.5", "-2e3", "nan", "inf", "x", "", " 7 ", "\"3\"", "\"a,b\"", "1e39", "\ufeff1"])


@st.composite
def csv_texts(draw):
    if draw(st.integers(0, 4)) == 0:
        return draw(st.binary(max_size=300))
    width = draw(st.integers(1, 4))
    rows = draw(st.lists(st.lists(CELLS, min_size=1, max_size=width + (draw(st.integers(0, 5)) == 0)), max_size=12))
    sep = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    return (sep.join(",".join(r) for r in rows) + draw(st.sampled_from(["", sep]))).encode()


@SET
@given(csv_texts(), st.booleans())
def csvs(data, header):
    import csv
    path = put("a.csv", data)
    try:
        with CsvReader(path) as r:
            cols = list(range(r.width))
            t = r.table(header, cols, [str(j) for j in cols])
    except ReadError as e:
        assert "\n" not in str(e)
        return
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    want = np.array([[float(c) for c in r] for r in rows[int(header):]], dtype=np.float64).reshape(-1, len(cols))
    assert np.isfinite(want).all() and (np.abs(want) <= np.finfo(np.float32).max).all()
    np.testing.assert_array_equal(t.x, want.astype(np.float32))


@SET
@given(st.binary(max_size=300))
def texts(data):
    path = put("a.txt", data)
    try:
        text = read_text(path)
    except ReadError as e:
        assert "\n" not in str(e)
        return
    with open(path, encoding="utf-8") as f:
        assert text == f.read()


@st.composite
def idx_files(draw):
    code = draw(st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x07, 0x00]))
    dims = draw(st.lists(st.one_of(small, sizes), max_size=4))
    head = bytes([0, 0 if draw(st.integers(0, 9)) else 1, code, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims)
    data = head + draw(st.binary(max_size=300))
    if draw(st.booleans()):
        import gzip
        data = gzip.compress(data)
    return data if draw(st.integers(0, 9)) else draw(st.binary(max_size=100))


@SET
@given(idx_files())
def idxs(data):
    path = put("a-idx", data)
    try:
        a = read_idx(path)
    except DataError as e:
        assert "\n" not in e.message
        return
    raw = data
    if raw[:2] == b"\x1f\x8b":
        import gzip
        raw = gzip.decompress(raw)
    n = raw[3]
    assert a.ndim == n and a.tobytes() == raw[4 + 4 * n:]


failed = 0
for test in (images, npys, npzs, csvs, texts, idxs):
    try:
        test()
        print("OK", test.__name__)
    except Exception:
        failed += 1
        print("FAILED", test.__name__)
        traceback.print_exc()
sys.exit(1 if failed else 0)
'''


def test_every_reader_returns_the_reference_or_its_one_line_error() -> None:
    """Random bytes and random valid-looking headers (PNG, GIF, BMP, TIFF and JPEG of random sizes and modes;
    .npy headers of random shapes, dtypes and byte counts; .npz archives of them; CSV text; IDX headers) to
    every reader, with low bounds, in a process of 1.5 GiB of address space: each returns what the reference
    reads (numpy.load, Python's csv and float, open(), the IDX bytes) or raises its own one-line error —
    never another exception, never an allocation the bounds do not allow."""
    pytest.importorskip("hypothesis")
    p = bounded(PROPERTY_SCRIPT, timeout=900, args=("300",), env={
        "DLSPEC_MAX_IMAGE_PIXELS": str(1 << 16), "DLSPEC_MAX_ARRAY_BYTES": str(MiB), "DLSPEC_MEMORY": "256M",
        "DLSPEC_MAX_CSV_BYTES": str(MiB), "DLSPEC_MAX_TEXT_BYTES": str(MiB)})
    assert p.returncode == 0, p.stdout + p.stderr[-6000:]
    assert p.stdout.split() == ["OK", "images", "OK", "npys", "OK", "npzs", "OK", "csvs", "OK", "texts", "OK", "idxs"]


def test_every_bound_is_documented_with_its_default_and_variable(monkeypatch: Any) -> None:
    """docs/limits.md's "Input files" table states each bound's default and variable as the code has them."""
    from dlspec.memory import fmt_bytes

    for var in readers.ENV.values():
        monkeypatch.delenv(var, raising=False)
    section = (REPO / "docs" / "limits.md").read_text(encoding="utf-8").split("## Input files")[1].split("\n## ")[0]
    b = readers.bounds()
    for name, var in readers.ENV.items():
        (row,) = [line for line in section.splitlines() if f"`{var}`" in line]
        value = getattr(b, name)
        default = row.split("|")[2]
        assert f"{value:,}" in default or fmt_bytes(value).replace(".0 ", " ") in default, (var, row)
    for fixed in (f"| {readers.ARRAY_DIMS} |", f"| {fmt_bytes(readers.NPZ_DIRECTORY_BYTES).replace('.0 ', ' ')} |",
                  f"| {fmt_bytes(readers.CSV_LINE).replace('.0 ', ' ')} |"):
        assert fixed in section, fixed
