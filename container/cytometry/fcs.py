"""Reading FCS files: FlowIO parses and validates HEADER and TEXT, numpy decodes DATA.

FlowIO's own DATA path keeps the events in an `array.array` and `as_array()` copies them into
float64 (3x the raw size before any analysis), masks integer data one byte at a time in Python
and returns nothing at all for 24-bit integers. So FlowIO reads the TEXT segment (offsets, the
"data beyond end of file" check, channel metadata, the first data set of a multi-set file), and
the DATA segment is decoded here in chunks straight into a channel-major float32 array, with
the same pre-processing as `FlowData.as_array()` (bit masks, $TIMESTEP, log amplification $PnE,
gain $PnG). tests/test_cytometry_fcs.py checks the result against `as_array()` on real files.

Nothing is guessed. The HEADER is checked here first, so that an empty, foreign or cut-short
file fails with plain words ("not an FCS file", "the file ends inside its TEXT segment: it was
cut short"); every parse error of FlowIO's becomes an FcsError. HEADER DATA offsets left blank
(allowed for large files, and written by some tools for any file) are taken from $BEGINDATA and
$ENDDATA. FCS 3.2's per-channel $PnDATATYPE is decoded field by field (tests/test_cytometry_reader.py
builds such files byte by byte); a type/width combination that is not in the standard is refused.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import flowio
import numpy as np

CHUNK_EVENTS = 1 << 14  # keeps the per-chunk buffers inside the CPU cache
_SCATTER = re.compile(r"^(FSC|SSC|FS|SS)([-_ ]|$)|^(FSC|SSC)", re.IGNORECASE)
_TIME = {"TIME", "HDR-T"}


class FcsError(ValueError):
    """The file is not an FCS file this pipeline can read."""


@dataclass(frozen=True)
class Channel:
    index: int
    name: str  # $PnN, made unique within the file
    label: str  # $PnS, may be empty
    kind: str  # "scatter" | "fluorescence" | "time"
    range: float  # $PnR
    top: float  # the largest recordable value, in data units (after $PnE / $PnG)


@dataclass
class Sample:
    path: Path
    version: str
    text: dict[str, str]
    channels: list[Channel]
    events: np.ndarray  # float32, shape (channels, events), C-contiguous
    raw_bytes: int  # size of the DATA that was decoded
    saturation: dict[str, float] = field(default_factory=dict)  # channel -> fraction at top of range
    notes: list[str] = field(default_factory=list)

    @property
    def n_events(self) -> int:
        return int(self.events.shape[1])

    def find(self, name: str) -> Channel | None:
        """A channel by $PnN, else by $PnS (case-insensitive as a fallback)."""
        for attr in ("name", "label"):
            for ch in self.channels:
                if getattr(ch, attr) == name:
                    return ch
        low = name.casefold()
        for attr in ("name", "label"):
            for ch in self.channels:
                if getattr(ch, attr).casefold() == low:
                    return ch
        return None


def read(path: Path) -> Sample:
    header = _header(path)
    fd = _text(path, header)
    text: dict[str, str] = fd.text
    notes: list[str] = []
    if _int(text, "nextdata", 0) != 0:
        notes.append("file holds more than one data set; the first was analysed")
    mode = text.get("mode", "L").strip().upper()
    if mode != "L":
        raise FcsError(f"$MODE={mode}: only list-mode data can be analysed")
    n_events = _int(text, "tot")
    n_channels = _int(text, "par")
    if n_channels < 1 or len(fd.channels) != n_channels:
        raise FcsError(f"$PAR={n_channels} but {len(fd.channels)} channels are described")

    fields = _data_layout(text, n_channels)
    event_size = sum(width for _, width in fields)
    start, stop = _data_offsets(fd)
    available = stop - start + 1 if stop >= start else 0
    needed = n_events * event_size
    if available < needed:
        raise FcsError(
            f"truncated or inconsistent DATA segment: {available} bytes for $TOT={n_events} events "
            f"of {event_size} bytes ({needed} bytes)"
        )
    if available == needed + 1:
        notes.append("DATA end offset is off by one (a common writer bug); $TOT events were read")
    elif available > needed:
        notes.append(f"DATA segment is {available - needed} bytes longer than $TOT events; ignored")

    channels = _channels(fd)
    events = np.empty((n_channels, n_events), dtype=np.float32)
    at_top = np.zeros(n_channels, dtype=np.int64)
    decoders = _decoders(fd, fields, channels)
    dtype = _record_dtype(text, fields)
    # Float32 in every channel (most FCS 3.x files): one transposing copy per chunk, then each
    # channel's own steps in place on its contiguous row (the same values as field by field).
    plain = all(f == ("f", 4) for f in fields)
    if plain:
        dtype = np.dtype(f"{_byte_order(text)}f4")
    with open(path, "rb") as fh:
        fh.seek(start)
        for a in range(0, n_events, CHUNK_EVENTS):
            count = min(CHUNK_EVENTS, n_events - a)
            records = np.fromfile(fh, dtype=dtype, count=count * n_channels if plain else count)
            got = records.shape[0] // n_channels if plain else records.shape[0]
            if got != count:
                raise FcsError(f"file ends inside the DATA segment (event {a + got})")
            if plain:
                block = events[:, a : a + count]
                np.copyto(block, records.reshape(count, n_channels).T)
                for j, decode in enumerate(decoders):
                    at_top[j] += decode(None, block[j])
                continue
            for j, decode in enumerate(decoders):
                at_top[j] += decode(records[f"c{j}"], events[j, a : a + count])

    saturation = {
        ch.name: float(at_top[ch.index]) / n_events
        for ch in channels
        if ch.kind != "time" and n_events and at_top[ch.index]
    }
    return Sample(
        path=path,
        version=fd.version,
        text=text,
        channels=channels,
        events=events,
        raw_bytes=needed,
        saturation=saturation,
        notes=notes,
    )


HEADER_SIZE = 58
VERSIONS = ("2.0", "3.0", "3.1", "3.2")


@dataclass(frozen=True)
class _Header:
    version: str
    text_start: int
    text_stop: int
    data_offsets_blank: bool  # HEADER data offsets left blank: $BEGINDATA/$ENDDATA give them
    size: int


def _header(path: Path) -> _Header:
    """Check the HEADER before FlowIO parses anything, so that each failure has plain words."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            raw = fh.read(HEADER_SIZE)
    except OSError as exc:
        raise FcsError(f"cannot open the file: {exc.strerror or exc}") from None
    if size == 0:
        raise FcsError("not an FCS file: it is empty")
    version = raw[3:6].decode("ascii", "replace")
    if not raw.startswith(b"FCS") or len(raw) < HEADER_SIZE or raw[6:10] != b"    ":
        raise FcsError("not an FCS file: it does not start with an FCS HEADER")
    if version not in VERSIONS:
        raise FcsError(f"not an FCS file this pipeline reads: version {version!r} (2.0, 3.0, 3.1, 3.2 are)")
    fields = [raw[a : a + 8].strip() for a in range(10, 58, 8)]
    try:
        text_start, text_stop = int(fields[0]), int(fields[1])
    except ValueError:
        raise FcsError("not an FCS file: the HEADER's TEXT offsets are not numbers") from None
    if not 0 < text_start <= text_stop:
        raise FcsError(f"not an FCS file: the HEADER's TEXT offsets {text_start}-{text_stop} are impossible")
    if text_stop >= size:
        raise FcsError(
            f"the file ends inside its TEXT segment: it was cut short ({size} bytes; TEXT ends at byte {text_stop})"
        )
    blank = fields[2] == b"" and fields[3] == b""
    if not blank and not (fields[2].isdigit() and fields[3].isdigit()):
        raise FcsError("not an FCS file: the HEADER's DATA offsets are not numbers")
    return _Header(version, text_start, text_stop, blank, size)


class _ZeroDataOffsets(io.RawIOBase):
    """The file as FlowIO should see it: blank HEADER DATA offsets read as 0 ("see TEXT")."""

    _PATCH = (26, b"       0       0")

    def __init__(self, path: Path) -> None:
        self._fh = open(path, "rb")  # noqa: SIM115 (closed by FlowIO through close())
        self.name = str(path)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._fh.seek(offset, whence)

    def tell(self) -> int:
        return self._fh.tell()

    def readinto(self, buffer: Any) -> int:
        at = self._fh.tell()
        n = self._fh.readinto(buffer)
        start, patch = self._PATCH
        lo, hi = max(at, start), min(at + n, start + len(patch))
        if lo < hi:
            memoryview(buffer)[lo - at : hi - at] = patch[lo - start : hi - start]
        return n

    def close(self) -> None:
        self._fh.close()
        super().close()


def _text(path: Path, header: _Header) -> flowio.FlowData:
    """FlowIO's parse of HEADER and TEXT, every failure as an FcsError in plain words."""
    source: Any = str(path)
    if header.data_offsets_blank:
        if header.version == "2.0":
            raise FcsError("the HEADER's DATA offsets are blank, and FCS 2.0 keeps them nowhere else")
        source = io.BufferedReader(_ZeroDataOffsets(path))
    try:
        return flowio.FlowData(
            source, only_text=True, nextdata_offset=0, ignore_offset_discrepancy=header.data_offsets_blank
        )
    except flowio.exceptions.FlowIOException as exc:
        message = str(exc)
        if "greater than file size" in message:
            raise FcsError(
                f"the file ends inside its DATA segment: it was cut short ({header.size} bytes)"
            ) from None
        raise FcsError(message) from None
    except KeyError as exc:
        raise FcsError(f"required keyword ${str(exc.args[0]).upper()} is missing") from None
    except (ValueError, IndexError, OSError, UnicodeError, EOFError) as exc:
        raise FcsError(f"the TEXT segment cannot be parsed ({type(exc).__name__}: {exc})") from None
    finally:
        if not isinstance(source, str):
            source.close()


def _int(text: dict[str, str], key: str, default: int | None = None) -> int:
    value = text.get(key)
    if value is None or not value.strip():
        if default is None:
            raise FcsError(f"required keyword ${key.upper()} is missing")
        return default
    try:
        return int(value.strip())
    except ValueError:
        raise FcsError(f"keyword ${key.upper()} is not an integer: {value!r}") from None


def _data_offsets(fd: flowio.FlowData) -> tuple[int, int]:
    # The same choice FlowIO makes (it has already checked HEADER vs TEXT and the file size):
    # FCS 2.0 keeps the offsets in the HEADER, 3.x in $BEGINDATA/$ENDDATA.
    if fd.version == "2.0" or "begindata" not in fd.text:
        return int(fd.header["data_start"]), int(fd.header["data_stop"])
    return _int(fd.text, "begindata"), _int(fd.text, "enddata")


def _byte_order(text: dict[str, str]) -> str:
    order = text.get("byteord", "").replace(" ", "")
    if order in ("1,2,3,4", "1,2", "1,2,3,4,5,6,7,8"):
        return "<"
    if order in ("4,3,2,1", "2,1", "8,7,6,5,4,3,2,1"):
        return ">"
    raise FcsError(f"unsupported $BYTEORD {order!r}")


def _data_layout(text: dict[str, str], n_channels: int) -> list[tuple[str, int]]:
    """(kind, byte width) per channel, kind being "f" (float) or "u" (unsigned integer).

    FCS 3.2 lets $PnDATATYPE override $DATATYPE for one channel (I, F or D); $PnB must then
    agree with the type (32 for F, 64 for D). Any other combination is refused, never guessed.
    """
    default = text.get("datatype", "").strip().upper()
    if default not in ("I", "F", "D"):
        raise FcsError(f"$DATATYPE={default or '?'} is not supported (only I, F and D)")
    layout = []
    for i in range(1, n_channels + 1):
        own = text.get(f"p{i}datatype", "").strip().upper()
        kind = own or default
        key = f"$P{i}DATATYPE={own}" if own else f"$DATATYPE={default}"
        if kind not in ("I", "F", "D"):
            raise FcsError(f"{key} is not supported (only I, F and D)")
        bits = _int(text, f"p{i}b", 0 if kind != "I" else None)
        if kind == "I":
            if bits not in (8, 16, 24, 32, 64):
                raise FcsError(f"$P{i}B={bits}: integer widths of 8, 16, 24, 32 or 64 bits are supported")
            layout.append(("u", bits // 8))
            continue
        want = 32 if kind == "F" else 64
        # FCS 3.1 files with $DATATYPE F/D have written other $PnB values; only an explicit
        # per-channel type must agree with its width.
        if own and bits not in (0, want):
            raise FcsError(f"{key} needs $P{i}B={want}, got $P{i}B={bits}")
        layout.append(("f", want // 8))
    return layout


def _record_dtype(text: dict[str, str], fields: list[tuple[str, int]]) -> np.dtype[Any]:
    order = _byte_order(text)
    formats: list[Any] = []
    offsets: list[int] = []
    at = 0
    for kind, width in fields:
        formats.append((np.uint8, (3,)) if width == 3 else np.dtype(f"{order}{kind}{width}"))
        offsets.append(at)
        at += width
    names = [f"c{j}" for j in range(len(fields))]
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": at})


def _channels(fd: flowio.FlowData) -> list[Channel]:
    out: list[Channel] = []
    seen: dict[str, int] = {}
    for index, number in enumerate(sorted(fd.channels)):
        meta = fd.channels[number]
        name = (meta["pnn"] or "").strip() or f"P{number}"
        if name in seen:
            seen[name] += 1
            name = f"{name}_{seen[name]}"
        else:
            seen[name] = 1
        upper = name.upper()
        if index == fd.time_index or upper in _TIME:
            kind = "time"
        elif _SCATTER.match(upper):
            kind = "scatter"
        else:
            kind = "fluorescence"
        decades, log0 = meta["pne"]
        rng = float(meta["pnr"])
        top = rng - 1
        if decades > 0:
            top = 10 ** (decades * top / rng) * log0
        if meta["png"] not in (0, 1.0):
            top /= meta["png"]
        out.append(Channel(index, name, (meta["pns"] or "").strip(), kind, rng, float(top)))
    return out


def _next_power_of_2(x: int) -> int:
    return 1 if x <= 0 else 1 << (x - 1).bit_length()


def _decoders(fd: flowio.FlowData, fields: list[tuple[str, int]], channels: list[Channel]) -> list[Any]:
    """One function per channel: decode a chunk of raw values into `out`, return the count at $PnR."""
    timestep = 1.0
    if fd.time_index is not None and "timestep" in fd.text:
        raw = fd.text["timestep"].strip()
        try:
            timestep = float(raw) if raw else 1.0
        except ValueError:
            raise FcsError(f"$TIMESTEP is not a number: {raw!r}") from None
    big_endian = _byte_order(fd.text) == ">"
    decoders = []
    for ch, (kind, width) in zip(channels, fields, strict=True):
        meta = fd.channels[ch.index + 1]
        decades, log0 = meta["pne"]
        gain = float(meta["png"])
        mask = None
        if kind == "u":
            limit = _next_power_of_2(int(ch.range))
            if limit < 2 ** (8 * width):
                mask = limit - 1
        scale = timestep if ch.index == fd.time_index else 1.0
        decoders.append(_make_decoder(width == 3, big_endian, mask, ch.range - 1, scale, decades, log0, ch.range, gain))
    return decoders


def _make_decoder(
    is24: bool,
    big_endian: bool,
    mask: int | None,
    top: float,
    scale: float,
    decades: float,
    log0: float,
    rng: float,
    gain: float,
) -> Any:
    def decode(raw: np.ndarray | None, out: np.ndarray) -> int:
        """raw None: `out` holds the raw values already (float32 data)."""
        if raw is not None:
            if is24:
                b = raw.astype(np.uint32)
                hi, lo = (0, 2) if big_endian else (2, 0)
                raw = (b[:, hi] << 16) | (b[:, 1] << 8) | b[:, lo]
            if mask is not None:
                raw = raw & mask
            out[...] = raw
        n_top = int(np.count_nonzero(out >= top))
        if scale != 1.0:
            out *= np.float32(scale)
        if decades > 0:
            out *= np.float32(decades / rng)
            np.power(np.float32(10), out, out=out)
            out *= np.float32(log0)
        if gain not in (0.0, 1.0):
            out /= np.float32(gain)
        return n_top

    return decode
