"""Every reader of a user's own files: images, .npy and .npz arrays, CSV tables, text — in bounded time and
memory, each refusal one line (a ReadError).

A file says what it holds before it holds it, and may lie: a 65-byte PNG header says 20000×20000 pixels,
an .npy header asks for 2.79 PiB, a GIF's logical screen is 65535², a zip member declares gigabytes.  Each
reader looks at what the file says (Pillow's `Image.open` reads the header only; numpy's .npy header; the
zip's table of contents) and checks it against the file's real size and against a documented bound
*before* it allocates; a CSV file is checked while it streams (bytes, rows, columns, the length of a line).
The bounds (docs/limits.md, "Input files"), each raisable with its environment variable:

    image pixels   DLSPEC_MAX_IMAGE_PIXELS   67,108,864 (8192×8192), width × height from the header
    array bytes    DLSPEC_MAX_ARRAY_BYTES    4 GiB: one .npy file, one .npz member, one IDX file's data
    CSV bytes      DLSPEC_MAX_CSV_BYTES      1 GiB
    CSV rows       DLSPEC_MAX_CSV_ROWS       10,000,000 (not blank)
    CSV columns    DLSPEC_MAX_CSV_COLUMNS    100,000
    text bytes     DLSPEC_MAX_TEXT_BYTES     256 MiB (char_text; a text_classes folder's texts together)
    folder files   DLSPEC_MAX_FOLDER_FILES   1,000,000 images (or .txt files) in one folder tree

and fixed ones: 32 dimensions of an array, 1 MiB of a .npz's table of contents, 16 MiB of a CSV
line (Python's csv module's 131,072 characters a field).

What is read is what a user expects: a 16-bit image at its real scale (x / 65535 maps to 0..1 as 8-bit
x / 255 does, never saturated), a palette, LA, RGBA, CMYK or 1-bit image as Pillow converts it to L or
RGB; a big-endian array in the machine's byte order; non-finite values counted and located
(`not_finite`).  Inputs are opened with safeio.open_input: a FIFO, a device or a folder is refused before
anything blocks on it.  numpy and Pillow are imported inside the readers; this module never imports torch.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import struct
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from .limits import env_bound
from .safeio import FileRefused, open_input, shown

ARRAY_DIMS = 32  # dimensions of an .npy array (numpy 1's own bound)
NPZ_DIRECTORY_BYTES = 1 << 20  # a .npz's table of contents (its zip central directory): some 10,000 members
CSV_LINE = 1 << 24  # bytes of one CSV line
_CR = re.compile(r"(?<=\r)(?!\n)")  # after a lone \r: where universal newlines end a line
IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF", "PPM")  # no EPS (Ghostscript), no exotic decoders
SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")


@dataclass(frozen=True)
class Bounds:
    image_pixels: int  # width × height of an image, from its header
    array_bytes: int  # the data of one .npy array (or .npz member, IDX file), as stored
    csv_bytes: int  # a CSV file's size
    csv_rows: int  # a CSV file's rows (blank lines not counted)
    csv_columns: int  # the fields of a CSV row
    text_bytes: int  # a text file's size (char_text), the texts of a text_classes folder together
    folder_files: int  # the files of one folder tree (predict --input DIR, image_folder, text_classes)


ENV = {"image_pixels": "DLSPEC_MAX_IMAGE_PIXELS", "array_bytes": "DLSPEC_MAX_ARRAY_BYTES",
       "csv_bytes": "DLSPEC_MAX_CSV_BYTES", "csv_rows": "DLSPEC_MAX_CSV_ROWS", "csv_columns": "DLSPEC_MAX_CSV_COLUMNS",
       "text_bytes": "DLSPEC_MAX_TEXT_BYTES", "folder_files": "DLSPEC_MAX_FOLDER_FILES"}


def bounds() -> Bounds:
    """The bounds in force: the defaults, or the environment's DLSPEC_MAX_* values."""
    return Bounds(
        image_pixels=env_bound(ENV["image_pixels"], 1 << 26),
        array_bytes=env_bound(ENV["array_bytes"], 1 << 32),
        csv_bytes=env_bound(ENV["csv_bytes"], 1 << 30),
        csv_rows=env_bound(ENV["csv_rows"], 10_000_000),
        csv_columns=env_bound(ENV["csv_columns"], 100_000),
        text_bytes=env_bound(ENV["text_bytes"], 1 << 28),
        folder_files=env_bound(ENV["folder_files"], 1_000_000),
    )


def bound_words(name: str, what: str) -> str:
    """`the bound for an image (DLSPEC_MAX_IMAGE_PIXELS=N raises it)`."""
    return f"the bound for {what} ({ENV[name]}=N raises it)"


class ReadError(ValueError):
    """A file a reader will not read: str() is one line that names the file (and the bound, for one beyond it).

    kind says what went wrong, for callers that add a help: `file` (unreadable, not this format, damaged),
    `encoding` (text that is not UTF-8), `bound` (beyond a bound), `value` (a value that cannot be the model's:
    a text cell, an object array, an id beyond the vocabulary), `finite` (nan, infinite, beyond float32),
    `ragged` (a CSV row of another width), `memory` (this machine ran out of memory)."""

    def __init__(self, message: str, kind: str = "file"):
        super().__init__(one_line(message))
        self.kind = kind


def one_line(text: object, limit: int = 400) -> str:
    """Text as one printable line of at most `limit` characters."""
    s = shown(" ".join(str(text).split()))
    return s if len(s) <= limit else s[:limit - 1] + "…"


def _why(e: BaseException) -> str:
    return one_line(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__, 160)


@contextlib.contextmanager
def opened(path: str, what: str) -> Iterator[IO[bytes]]:
    """A regular file opened rb (safeio.open_input), its refusal a ReadError."""
    try:
        f = open_input(path, what)
    except FileRefused as e:
        raise ReadError(str(e)) from None
    with f:
        yield f


# --- images -------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _pil_open(path: str) -> Iterator[Any]:
    """The image, its header read and its size checked against the pixel bound; nothing decoded yet.

    Pillow's own decompression-bomb check (a warning, then an error at twice Image.MAX_IMAGE_PIXELS) is set
    aside while it runs: the bound here is the one that applies, and its message names it."""
    try:
        from PIL import Image
    except ImportError:
        raise ReadError("reading images needs Pillow (pip install 'dlspec[vision]'); a .npy array can be given "
                        "instead") from None
    limit = bounds().image_pixels
    with opened(path, "image file") as f:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            try:
                im = Image.open(f, formats=list(IMAGE_FORMATS))
            except Exception as e:  # noqa: BLE001 - Pillow's plugins raise many kinds for a damaged header
                raise ReadError(f"cannot read {shown(path)} as an image ({_why(e)})") from None
            with im:
                w, h = im.size
                if w * h > limit:
                    raise ReadError(f"{shown(path)} is a {w}×{h} image ({w * h:,} pixels): more than {limit:,} pixels, "
                                    + bound_words("image_pixels", "an image"), "bound")
                if w < 1 or h < 1:
                    raise ReadError(f"{shown(path)} is a {w}×{h} image: it has no pixels")
                yield im
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def read_image(path: str, channels: int, size: tuple[int, int] | None = None, form: str = "float") -> Any:
    """An image file as an (H, W, channels) array: gray (channels 1) or RGB (3), resized (bilinear) to
    size = (H, W) when given.

    form "float": float32 on the 8-bit scale, 0 .. 255 (a 16-bit value x is x / 257, so that / 255 gives
    x / 65535); form "uint8": uint8 (a 16-bit value rounded to the nearest 8-bit one, x / 257).  8-bit and
    palette images are converted by Pillow (its L and RGB conversions), 16-bit ones (I;16, I;16B, I)
    here, at their real scale; a 32-bit float image (F) is read on the 8-bit scale as Pillow reads it, its
    values refused when beyond 0 .. 255.  ReadError for anything that cannot be read, with kind `memory`
    when this machine runs out of memory decoding it."""
    import numpy as np

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's warnings (palette transparency, ...) are not the user's news
        with _pil_open(path) as im:
            try:
                a = _pixels(im, path, channels, size, form)
            except ReadError:
                raise
            except MemoryError:
                w, h = im.size
                raise ReadError(f"out of memory decoding image {shown(path)} ({w}×{h})"
                                + (f" and resizing it to {size[1]}×{size[0]}" if size else ""), "memory") from None
            except Exception as e:  # noqa: BLE001 - truncated, damaged: Pillow's decoders raise many kinds
                raise ReadError(f"cannot read {shown(path)} as an image ({_why(e)})") from None
    return a if a.ndim == 3 else a[:, :, None] if channels == 1 else np.repeat(a[:, :, None], 3, axis=2)


def _pixels(im: Any, path: str, channels: int, size: tuple[int, int] | None, form: str) -> Any:
    """The decoded pixels: (H, W, C) for 8-bit RGB, (H, W) for gray (repeated to RGB by the caller)."""
    import numpy as np
    from PIL import Image

    if im.mode in SIXTEEN_BIT or im.mode == "F":
        raw = np.asarray(im)
        if im.mode == "F":
            bad = ~((raw >= 0) & (raw <= 255))
            if bad.any():
                i = np.unravel_index(int(np.argmax(bad)), raw.shape)
                raise ReadError(f"{shown(path)} is a 32-bit float image whose pixel at row {i[0]}, column {i[1]} is "
                                f"{float(raw[i])!r}: its values are read on the 8-bit scale, 0 .. 255 (save it as an 8- or "
                                "16-bit image, or give a .npy array)", "value")
            gray = raw.astype(np.float32)
        else:
            if im.mode == "I" and raw.size and (int(raw.min()) < 0 or int(raw.max()) > 65535):
                raise ReadError(f"{shown(path)} is a 32-bit integer image with values from {int(raw.min())} to "
                                f"{int(raw.max())}: only 16-bit values (0 .. 65535) are read", "value")
            if form == "uint8":  # rounded to 8 bits first, then resized as an 8-bit image is
                return np.asarray(_resized(Image.fromarray(np.rint(raw / 257.0).astype(np.uint8)), size))
            gray = (raw / 257.0).astype(np.float32)
        if form == "uint8":
            return np.rint(np.asarray(_resized(Image.fromarray(gray), size))).astype(np.uint8)
        return np.asarray(_resized(Image.fromarray(gray), size), dtype=np.float32)
    im = im.convert("L" if channels == 1 else "RGB")
    im = _resized(im, size)
    return np.asarray(im, dtype=np.float32 if form == "float" else np.uint8)


def _resized(im: Any, size: tuple[int, int] | None) -> Any:
    from PIL import Image

    if size is None or im.size == (size[1], size[0]):
        return im
    return im.resize((size[1], size[0]), Image.Resampling.BILINEAR)


# --- .npy and .npz ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArrayHeader:
    """What an .npy header says: the shape, the dtype and the layout of the data that follows."""

    shape: tuple[int, ...]
    dtype: Any  # numpy.dtype
    fortran: bool

    @property
    def count(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.count * self.dtype.itemsize


def _npy_header(f: IO[bytes], name: str) -> ArrayHeader:
    """The header of the .npy data at f's position (numpy's own parser: at most 10,000 characters, read with
    ast.literal_eval); ReadError for anything that is not an .npy header."""
    import numpy.lib.format as npy

    try:
        version = npy.read_magic(f)
    except Exception as e:  # noqa: BLE001 - too short, wrong magic
        raise ReadError(f"{name} is not a .npy array: it does not start with numpy's signature \\x93NUMPY "
                        f"({_why(e)})") from None
    if version not in ((1, 0), (2, 0)):
        raise ReadError(f"{name} is a .npy file of format {version[0]}.{version[1]}: only formats 1.0 and 2.0 "
                        "(arrays of numbers) are read")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numpy's note about headers written by Python 2
            shape, fortran, dtype = (npy.read_array_header_1_0 if version == (1, 0) else
                                     npy.read_array_header_2_0)(f)
    except Exception as e:  # noqa: BLE001 - a damaged header: ValueError, SyntaxError, RecursionError, ...
        raise ReadError(f"{name} is damaged: its .npy header cannot be read ({_why(e)})") from None
    return ArrayHeader(tuple(int(d) for d in shape), dtype, bool(fortran))


def check_header(h: ArrayHeader, name: str, available: int, where: str, subject: str = "its header") -> None:
    """Refuse what no reader of numbers takes (objects, records, text: never a pickle), a negative size, more
    dimensions than ARRAY_DIMS, more bytes than `available` stored after the header (`where` says so: `the
    file holds {available} bytes of data`) or than the array bound."""
    from .memory import fmt_bytes

    dt = h.dtype
    if dt.hasobject or dt.fields is not None or dt.subdtype is not None or dt.kind not in "biuf":
        raise ReadError(f"{name} holds {dt} values, not numbers (objects, records and text are not read)", "value")
    if len(h.shape) > ARRAY_DIMS:
        raise ReadError(f"{name} has {len(h.shape)} dimensions: more than {ARRAY_DIMS}, the bound for an array",
                        "bound")
    if any(d < 0 for d in h.shape):
        raise ReadError(f"{name} is damaged: {subject} gives the shape {h.shape}, with a negative size")
    said = f"{subject} claims shape {h.shape} {dt} ({h.nbytes:,} bytes)"
    if math.prod(d for d in h.shape if d) * dt.itemsize >= 2**63:  # numpy's own bound, even for 0 values
        raise ReadError(f"{name} is damaged: {subject} claims shape {h.shape}, larger than any array can be")
    if h.nbytes > available:
        raise ReadError(f"{name} is damaged: {said} but {where.format(available=f'{max(available, 0):,}')}")
    limit = bounds().array_bytes
    if h.nbytes > limit:
        raise ReadError(f"{name}: {said}: more than {fmt_bytes(limit)}, " + bound_words("array_bytes", "an array"),
                        "bound")


def _npy_data(f: IO[bytes], name: str, h: ArrayHeader) -> Any:
    """The array whose header was just read: native byte order, writable, float wider than 64 bits as float64."""
    import numpy as np

    data = f.read(h.nbytes)
    if len(data) < h.nbytes:
        raise ReadError(f"{name} is truncated: its header claims {h.nbytes:,} bytes of data but {len(data):,} follow")
    a = np.frombuffer(data, dtype=h.dtype, count=h.count).reshape(h.shape, order="F" if h.fortran else "C")
    native = np.dtype(np.float64) if h.dtype.kind == "f" and h.dtype.itemsize > 8 else h.dtype.newbyteorder("=")
    return a.astype(native)  # a copy: writable, in this machine's byte order


def read_npy(path: str, accept: Callable[[ArrayHeader], None] | None = None) -> Any:
    """An .npy file's array (as numpy.load gives it, in native byte order), read after its header has been
    checked (check_header against the file's size) and, when given, accepted by `accept` (which raises to
    refuse a shape before its data is read)."""
    with opened(path, ".npy file") as f:
        size = os.fstat(f.fileno()).st_size
        h = _npy_header(f, shown(path))
        check_header(h, shown(path), size - f.tell(), "the file holds {available} bytes of data")
        if accept is not None:
            accept(h)
        return _npy_data(f, shown(path), h)


def _directory_size(f: IO[bytes]) -> int | None:
    """The size its end record gives a zip file's central directory (zip64 too), None when it has none."""
    f.seek(0, os.SEEK_END)
    size = f.tell()
    tail_start = max(0, size - (0xFFFF + 22))
    f.seek(tail_start)
    tail = f.read()
    i = tail.rfind(b"PK\x05\x06")
    if i < 0 or len(tail) < i + 22:
        return None
    (cd,) = struct.unpack("<I", tail[i + 12:i + 16])
    if cd == 0xFFFFFFFF and i >= 20 and tail[i - 20:i - 16] == b"PK\x06\x07":
        (where,) = struct.unpack("<Q", tail[i - 12:i - 4])
        f.seek(where)
        rec = f.read(56)
        if len(rec) == 56 and rec[:4] == b"PK\x06\x06":
            (cd,) = struct.unpack("<Q", rec[40:48])
    return int(cd)


def npz_member(filename: str) -> str:
    """The name numpy gives a .npz member: its file name less `.npy`."""
    return filename[:-4] if filename.endswith(".npy") else filename


def read_npz(path: str, names: list[str], accept: Callable[[list[str], dict[str, ArrayHeader]], None] | None = None
             ) -> tuple[list[str], dict[str, Any]]:
    """(the names of a .npz file's arrays, {name: array} for those of `names` it holds).

    Each wanted member's .npy header is read and checked first — against the bytes the archive declares
    for it (a zip bomb declares them, and no more is ever inflated) and against the array bound — then
    `accept` sees the stored names and those headers (and raises to refuse), and only then is data read."""
    import zipfile
    import zlib

    with opened(path, ".npz file") as f:
        head = f.read(4)
        if head not in (b"PK\x03\x04", b"PK\x05\x06"):  # numpy.load's own test of a .npz
            raise ReadError(f"{shown(path)} is not a .npz file: it is not a zip archive (it starts with {head!r})")
        cd = _directory_size(f)
        if cd is not None and cd > NPZ_DIRECTORY_BYTES:
            raise ReadError(f"{shown(path)} has a table of contents of {cd:,} bytes: more than {NPZ_DIRECTORY_BYTES:,}, "
                            "the bound for a .npz file (about 10,000 arrays)", "bound")
        f.seek(0)
        try:
            with zipfile.ZipFile(f) as z:
                files = z.namelist()
                stored = [npz_member(n) for n in files]  # numpy's NpzFile.files
                infos = {n: z.getinfo(n if n in files else n + ".npy") for n in names if n in files or n in stored}
                headers = {}
                for n in infos:
                    with z.open(infos[n]) as m:
                        h = _npy_header(m, f"{shown(path)}: array '{shown(n)}'")
                        check_header(h, shown(path), infos[n].file_size - m.tell(),
                                     "the archive holds {available} bytes for it", f"its array '{shown(n)}'")
                    headers[n] = h
                if accept is not None:
                    accept(stored, headers)
                arrays = {}
                for n, h in headers.items():
                    with z.open(infos[n]) as m:
                        _npy_header(m, n)
                        arrays[n] = _npy_data(m, f"{shown(path)}: array '{shown(n)}'", h)
        except ReadError:
            raise
        except MemoryError:
            raise ReadError(f"out of memory reading {shown(path)}", "memory") from None
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError, RuntimeError,
                struct.error, KeyError, IndexError, OverflowError, UnicodeDecodeError) as e:
            raise ReadError(f"cannot read {shown(path)} as a .npz file ({_why(e)})") from None
    return stored, arrays


def not_finite(a: Any) -> tuple[int, tuple[int, ...]] | None:
    """(how many values of a float array are nan, infinite or beyond float32, the index of the first), or None;
    in chunks, so that the check takes little memory beside the array."""
    import numpy as np

    if a.dtype.kind != "f" or a.size == 0:
        return None
    flat = a.reshape(-1)
    count, first = 0, -1
    step = 1 << 22
    for i in range(0, flat.size, step):
        part = flat[i:i + step]
        bad = ~np.isfinite(part) if part.dtype.itemsize <= 4 else ~(np.abs(part) <= np.finfo(np.float32).max)
        n = int(bad.sum())
        if n and first < 0:
            first = i + int(np.argmax(bad))
        count += n
    if not count:
        return None
    return count, tuple(int(k) for k in np.unravel_index(first, a.shape))


def check_finite(a: Any, name: str) -> None:
    """ReadError naming how many values of `a` are not finite numbers (float32's), and where the first is."""
    bad = not_finite(a)
    if bad is not None:
        count, at = bad
        value = float(a[at] if a.ndim else a)
        raise ReadError(f"{name} holds {count:,} value{'s' if count > 1 else ''} that {'are' if count > 1 else 'is'} "
                        f"not a finite number (nan, infinite or beyond float32), the first {value!r} at "
                        f"[{', '.join(map(str, at))}]", "finite")


def check_ids(a: Any, name: str, vocab: int | None, what: str) -> None:
    """Token ids: whole numbers from 0 to vocab - 1 (`what` says where vocab comes from), refused before
    torch sees them (an id beyond an Embedding's table is an IndexError on the CPU, a device assert on a GPU)."""
    import numpy as np

    if a.size == 0:
        return
    if a.dtype.kind == "f":
        check_finite(a, name)
        frac = a != np.floor(a)
        if frac.any():
            at = np.unravel_index(int(np.argmax(frac)), a.shape)
            raise ReadError(f"{name} holds {float(a[at])!r} at [{', '.join(map(str, at))}]: token ids are whole numbers",
                            "value")
    top = vocab - 1 if vocab is not None else np.iinfo(np.int64).max
    low, high = a.min(), a.max()
    for bad, value in ((low < 0, low), (high > top, high)):
        if bad:
            at = np.unravel_index(int(np.argmax(a == value)), a.shape)
            ok = f"0 to {top:,} ({what})" if vocab is not None else "0 and above (int64)"
            raise ReadError(f"{name} holds the id {int(value)} at [{', '.join(map(str, at))}]: the model's ids are {ok}",
                            "value")


# --- CSV ----------------------------------------------------------------------------------------------


@dataclass
class Table:
    """The columns a caller asked for of a CSV file's data rows."""

    lines: list[int]  # the line number of each row (1-based, as an editor shows it)
    x: Any  # numpy (rows, len(numeric)) of the numeric columns
    text: list[str] | None  # the text column's cells, when one was asked for


class CsvReader:
    """A CSV file read as it streams: UTF-8 (a BOM is skipped), blank lines skipped, every row as wide as the
    first; the file's bytes, its rows, its columns and the length of a line bounded while it is read.

    `head` holds the first rows (line number, stripped fields) for the caller to decide on a header and
    the columns; `table()` then reads every row into numbers, a value at a time, never the whole file as
    text."""

    HEAD = 50

    def __init__(self, path: str, delimiter: str = ",", max_rows: int | None = None):
        import csv

        b = bounds()
        self.path, self.name = path, shown(path)
        self.max_rows = min(b.csv_rows, max_rows) if max_rows is not None else b.csv_rows
        self.caller_rows = max_rows is not None and max_rows < b.csv_rows
        self.columns = b.csv_columns
        self._stack = contextlib.ExitStack()
        self._file = self._stack.enter_context(opened(path, "CSV file"))
        size = os.fstat(self._file.fileno()).st_size
        self.limit = b.csv_bytes
        if size > self.limit:
            self.close()
            raise ReadError(f"{self.name} has {size:,} bytes: more than {self.limit:,}, "
                            + bound_words("csv_bytes", "a CSV file"), "bound")
        self._reader = csv.reader(self._lines(), delimiter=delimiter)
        self._count = 0
        self.head: list[tuple[int, list[str]]] = []
        try:
            for line, row in self._rows():
                self.head.append((line, [c.strip() for c in row]))
                if len(self.head) >= self.HEAD:
                    break
        except BaseException:
            self.close()
            raise
        if not self.head:
            self.close()
            raise ReadError(f"{self.name} is empty")
        self.width = len(self.head[0][1])

    def __enter__(self) -> CsvReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._stack.close()

    def _lines(self) -> Iterator[str]:
        """The file's lines as text, split as Python's universal newlines split them (\\n, \\r\\n, \\r, the
        ends kept, as csv wants), each decoded on its own (a UTF-8 error is at its line); the bytes and the
        length of a line bounded."""
        n, seen = 0, 0
        while True:
            raw = self._file.readline(CSV_LINE + 1)
            if not raw:
                return
            seen += len(raw)
            if seen > self.limit:  # a file that grows while it is read
                raise ReadError(f"{self.name} is larger than {self.limit:,} bytes, "
                                + bound_words("csv_bytes", "a CSV file"), "bound")
            if len(raw) > CSV_LINE:
                raise ReadError(f"{self.name} line {n + 1} is longer than {CSV_LINE:,} bytes, the bound for a CSV "
                                "line", "bound")
            if n == 0 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ReadError(f"{self.name} is not UTF-8 text (line {n + 1}, byte {e.start + 1}: {e.reason})",
                                "encoding") from None
            for line in _CR.split(text) if "\r" in text[:-2] else (text,):
                if line:  # (a lone \r at the very end leaves an empty piece)
                    n += 1
                    yield line

    def _rows(self) -> Iterator[tuple[int, list[str]]]:
        """(line number, fields as they are) of each row that is not blank, bounded and checked for width."""
        import csv

        width = None
        try:
            for row in self._reader:
                if not row or not any(c.strip() for c in row):
                    continue
                line = self._reader.line_num
                if len(row) > self.columns:
                    raise ReadError(f"{self.name} line {line} has {len(row):,} fields: more than {self.columns:,}, "
                                    + bound_words("csv_columns", "a CSV row"), "bound")
                if width is None:
                    width = len(row)
                elif len(row) != width:
                    raise ReadError(f"{self.name} line {line} has {len(row)} fields but the first row has {width}",
                                    "ragged")
                self._count += 1
                if self._count > self.max_rows + 1:  # + 1: a header row
                    raise ReadError(f"{self.name} has more than {self.max_rows:,} rows; at most {self.max_rows:,} are "
                                    "read at a time" if self.caller_rows else f"{self.name} has more than "
                                    f"{self.max_rows:,} rows, " + bound_words("csv_rows", "a CSV file"), "bound")
                yield line, row
        except csv.Error as e:
            raise ReadError(f"{self.name} line {self._reader.line_num}: {e}") from None

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        """Every row that is not blank: the head's (stripped), then the rest of the file's (as they are: a number
        reads the same either way, and only the cells a caller keeps are stripped)."""
        yield from self.head
        yield from self._rows()

    def table(self, header: bool, numeric: list[int], names: list[str], text: int | None = None,
              dtype: str = "float32", chunk: int = 4096) -> Table:
        """The numeric columns (names[k] names numeric[k] in messages) of every data row as `dtype` — each
        value finite and within float32 — and the cells of the `text` column."""
        import numpy as np

        lines: list[int] = []
        parts: list[Any] = []
        cells: list[str] | None = [] if text is not None else None
        seen: dict[str, str] = {}
        pending: list[tuple[int, list[str]]] = []

        def flush() -> None:
            parts.append(self._numbers(pending, numeric, names, dtype))
            pending.clear()

        rows = self.rows()
        if header:
            next(rows)
        for line, r in rows:
            lines.append(line)
            pending.append((line, r))
            if cells is not None and text is not None:
                cell = r[text].strip()
                cells.append(seen.setdefault(cell, cell))  # one string per distinct label
            if len(pending) >= chunk:
                flush()
        if pending or not parts:
            flush()
        return Table(lines, np.concatenate(parts) if len(parts) > 1 else parts[0], cells)

    def _numbers(self, rows: list[tuple[int, list[str]]], numeric: list[int], names: list[str], dtype: str) -> Any:
        import numpy as np

        try:  # numpy parses text as Python's float() does (whitespace, nan, 1_000), twice as fast
            values = np.array([[r[j] for j in numeric] for _, r in rows], dtype=np.float64)
        except ValueError:
            line, r, k = next((line, r, k) for line, r in rows for k, j in enumerate(numeric) if not is_number(r[j]))
            cell = r[numeric[k]].strip()
            raise ReadError(f"{self.name} line {line}, column {names[k]}: {cell!r} is not a number" if cell else
                            f"{self.name} line {line}, column {names[k]}: the value is missing", "value") from None
        values = values.reshape(len(rows), len(numeric))
        bad = not_finite(values)
        if bad is not None:
            i, k = bad[1]
            line, r = rows[i]
            raise ReadError(f"{self.name} line {line}, column {names[k]}: {r[numeric[k]].strip()!r} is not a finite "
                            "number", "finite")
        return values.astype(dtype)


def is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


# --- text ---------------------------------------------------------------------------------------------


def read_text(path: str, what: str = "text file") -> str:
    """A UTF-8 text file (universal newlines: \\r\\n and \\r read as \\n), at most the text bound."""
    limit = bounds().text_bytes
    with opened(path, what) as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            raise ReadError(f"{shown(path)} has {size:,} bytes: more than {limit:,}, " + bound_words("text_bytes", "a "
                            "text file"), "bound")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ReadError(f"{shown(path)} is larger than {limit:,} bytes, " + bound_words("text_bytes", "a text file"),
                        "bound")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ReadError(f"{shown(path)} is not UTF-8 text (byte {e.start}: {e.reason})", "encoding") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")
