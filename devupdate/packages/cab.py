"""Reading Microsoft Cabinet files (MS-CAB) one member at a time, refusing anything unsafe.

Why our own reader: cabarchive 0.2.5 keeps the whole cab, every decompressed folder and a copy
of every member in memory at once (measured: ~500 MB peak RSS and 3.5-4.4 s for a 100 MB
package), gives no stream to stage from, and misreads 255-byte member names. This module parses
the header and file table up front — every refusal that needs no decompression happens before
any is done — then decodes stored and MSZIP folders one 32 KiB CFDATA block at a time while a
member is read. LZX and Quantum folders are handed to libmspack's ``cabextract``, run into a
private temporary directory. cabarchive supplies the on-disk record layouts and stays our
writer (see ``writer.py``).
"""

from __future__ import annotations

import bisect
import functools
import io
import os
import shutil
import signal
import struct
import subprocess
import tempfile
import unicodedata
import zlib
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, TypeAlias

from cabarchive.utils import FMT_CFDATA, FMT_CFFILE, FMT_CFFOLDER, FMT_CFHEADER, FMT_CFHEADER_RESERVE

from devupdate.packages.errors import PackageError

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

#: What ``CabMember.open`` returns: a decoding stream, or a file cabextract wrote.
MemberStream: TypeAlias = "io.RawIOBase | io.BufferedIOBase"

CFHEADER = struct.Struct(FMT_CFHEADER)
CFHEADER_RESERVE = struct.Struct(FMT_CFHEADER_RESERVE)
CFFOLDER = struct.Struct(FMT_CFFOLDER)
CFFILE = struct.Struct(FMT_CFFILE)
CFDATA = struct.Struct(FMT_CFDATA)

FLAG_PREV_CABINET = 0x0001
FLAG_NEXT_CABINET = 0x0002
FLAG_RESERVE_PRESENT = 0x0004
ATTR_NAME_IS_UTF = 0x80
IFOLDER_CONTINUED = 0xFFFD  # 0xFFFD..0xFFFF: the file continues from/into another cabinet

COMPRESSION_NONE, COMPRESSION_MSZIP, COMPRESSION_QUANTUM, COMPRESSION_LZX = 0, 1, 2, 3
COMPRESSION_NAMES = {0: "none", 1: "MSZIP", 2: "Quantum", 3: "LZX"}
NATIVE = (COMPRESSION_NONE, COMPRESSION_MSZIP)
BLOCK_MAX = 32768  # uncompressed bytes per CFDATA block (and the MSZIP window)
NAME_MAX = 256  # bytes of a CFFILE name including its NUL
CHUNK = 1 << 20
GROUP = 32  # CFDATA blocks read and checksum-verified together (about 1 MiB)
CABEXTRACT_HINT = "install cabextract (Debian/Ubuntu: apt-get install cabextract)"


@dataclass(frozen=True)
class Limits:
    """What a cab may expand to. Checked on the header-declared sizes before anything is decompressed.

    ``ratio_floor``: the expansion ratio only matters once the content is big enough to hurt; a
    30 KB text file in a 200-byte cab is 150:1 and harmless. ``tool_timeout`` bounds cabextract.
    ``max_blocks``: CFDATA blocks in all folders (each costs a record in memory while the cab is
    open); 2 GiB of content in full 32 KiB blocks is 65,536.
    """

    max_total_size: int = 2 * 1024**3
    max_ratio: float = 200.0
    max_members: int = 1000
    max_blocks: int = 1 << 18
    ratio_floor: int = 1024**2
    tool_timeout: float = 300.0


@dataclass(frozen=True)
class _Block:
    offset: int  # of the CFDATA record
    checksum: int
    packed: int
    size: int
    start: int  # uncompressed offset of this block within its folder


@dataclass(frozen=True)
class _Folder:
    index: int
    compression: int  # low four bits of typeCompress
    type_compress: int
    blocks: tuple[_Block, ...]
    size: int  # declared uncompressed size (sum of the blocks)

    @property
    def compression_name(self) -> str:
        name = COMPRESSION_NAMES.get(self.compression, f"type {self.compression}")
        if self.compression in (COMPRESSION_QUANTUM, COMPRESSION_LZX):
            name += f" (window 2^{(self.type_compress >> 8) & 0x1F})"
        return name


class CabMember:
    """One file of a cab: ``name`` ('/'-separated, as stored), ``size``, and ``open()`` to stream it.

    Streams decode on demand; reading the members in cab order (as ``Cabinet.members`` lists
    them) decodes each folder once.
    """

    __slots__ = ("name", "size", "folder", "offset", "date_time", "_cabinet")

    def __init__(self, cabinet: Cabinet, name: str, size: int, folder: int, offset: int,
                 date_time: tuple[int, int]) -> None:
        self.name = name
        self.size = size
        self.folder = folder
        self.offset = offset
        self.date_time = date_time  # raw MS-DOS (date, time) words
        self._cabinet = cabinet

    def open(self) -> MemberStream:
        """A fresh binary stream of exactly ``size`` bytes; raises PackageError if the data is damaged."""
        return self._cabinet._open_member(self)

    def read_bytes(self) -> bytes:
        with self.open() as stream:
            return stream.read()

    def __repr__(self) -> str:
        return f"CabMember({self.name!r}, size={self.size})"


class Cabinet:
    """A parsed, validated cab; members stream from the file (or cabextract's output) on demand.

    Construction reads only the header, folder table, file table and CFDATA headers, and refuses
    (PackageError) before decompressing anything: not a cabinet, truncated, multi-cabinet sets,
    unsafe or duplicate names, too many members, too large, decompression bombs. Damage found
    while decoding raises PackageError("corrupt") from the member's stream. Use as a context
    manager: ``close()`` removes the temporary directory (``materialize()`` output and the
    cabextract fallback's). Not thread-safe; one importer works on one Cabinet.
    """

    def __init__(self, path: Path | str, limits: Limits = Limits(), *, workdir: Path | str | None = None) -> None:
        self.path = Path(path)
        self.limits = limits
        self._workdir = workdir
        self._tmp: str | None = None
        self._extracted: Path | None = None  # cabextract's output (LZX/Quantum folders)
        self._decoded: Path | None = None  # our output for stored/MSZIP folders, after materialize()
        self._cursors: dict[int, _Cursor] = {}
        self._closed = False
        self.members: list[CabMember] = []
        self.folders: list[_Folder] = []
        with open(self.path, "rb") as handle:
            self.file_size = os.fstat(handle.fileno()).st_size
            self._parse(handle)

    # -- lifetime --------------------------------------------------------------------------------

    def close(self) -> None:
        self._closed = True
        for cursor in self._cursors.values():
            cursor.close()
        self._cursors.clear()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
        self._extracted = self._decoded = None

    def __enter__(self) -> Cabinet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def compressions(self) -> list[str]:
        """Compression of each folder, e.g. ['MSZIP', 'LZX (window 2^21)'] (for messages and logs)."""
        return [folder.compression_name for folder in self.folders]

    # -- parsing ---------------------------------------------------------------------------------

    def _corrupt(self, what: str) -> PackageError:
        return PackageError("corrupt", f"{self.path.name} is truncated or corrupt: {what}")

    def _read_at(self, handle: BinaryIO, offset: int, length: int, what: str) -> bytes:
        if offset < 0 or length < 0 or offset + length > self.cab_size:
            raise self._corrupt(f"{what} lies outside the cabinet ({self.cab_size} bytes)")
        handle.seek(offset)
        data = handle.read(length)
        if len(data) != length:
            raise self._corrupt(f"{what} is cut off")
        return data

    def _parse(self, handle: BinaryIO) -> None:
        head = handle.read(CFHEADER.size)
        if head[:4] != b"MSCF":
            raise PackageError("not-a-cabinet", f"{self.path.name} is not a cabinet file (no 'MSCF' signature)")
        if len(head) < CFHEADER.size:
            raise self._corrupt(f"the {CFHEADER.size}-byte header is cut off after {len(head)} bytes")
        (_, cab_size, files_offset, version_minor, version_major, n_folders, n_files, flags, self.set_id,
         index) = CFHEADER.unpack(head)
        if flags & (FLAG_PREV_CABINET | FLAG_NEXT_CABINET) or index != 0:
            raise PackageError("multi-cabinet", f"{self.path.name} is one cabinet of a multi-cabinet set "
                               f"(flags 0x{flags:04x}, index {index}); repack its content as a single cabinet")
        if version_major != 1:
            raise self._corrupt(f"unknown cabinet format version {version_major}.{version_minor}")
        if cab_size > self.file_size:
            raise self._corrupt(f"the header says {cab_size} bytes, the file has {self.file_size}")
        if cab_size < CFHEADER.size:
            raise self._corrupt(f"the header says the cabinet is only {cab_size} bytes")
        self.cab_size = cab_size  # bytes after it (e.g. an Authenticode signature) are never read
        if n_folders == 0:
            raise self._corrupt("it has no folders")
        if n_files == 0:
            raise self._corrupt("it lists no files")
        if n_files > self.limits.max_members:
            raise PackageError("too-many-members", f"{self.path.name} has {n_files} members, above the limit "
                               f"of {self.limits.max_members}")
        offset = CFHEADER.size
        folder_reserve = self._data_reserve = 0
        if flags & FLAG_RESERVE_PRESENT:
            header_reserve, folder_reserve, self._data_reserve = CFHEADER_RESERVE.unpack(
                self._read_at(handle, offset, CFHEADER_RESERVE.size, "the reserve sizes"))
            offset += CFHEADER_RESERVE.size + header_reserve
        records = []
        for i in range(n_folders):
            records.append(CFFOLDER.unpack(self._read_at(handle, offset, CFFOLDER.size, f"folder {i}")))
            offset += CFFOLDER.size + folder_reserve
        self._check_block_count(sum(n_blocks for _, n_blocks, _ in records))
        for i, (data_offset, n_blocks, type_compress) in enumerate(records):
            self.folders.append(self._parse_folder(handle, i, data_offset, n_blocks, type_compress))
        if files_offset != offset:
            # FDI seeks to coffFiles, libmspack reads on after the folders: when they differ the
            # tools see different members ("hidden files"), so neither reading can be trusted.
            raise self._corrupt(f"the file table is said to start at {files_offset} but the folder table "
                                f"ends at {offset}; tools would disagree about the members")
        for i in range(n_files):
            offset = self._parse_file(handle, i, offset)
        self._check_names()
        self._check_sizes()
        self._check_layout()

    def _check_block_count(self, total: int) -> None:
        # Every CFDATA block has its own header inside the cabinet, so more blocks than headers fit
        # means folders share blocks: 65,535 folders x 65,535 blocks over one small data area is
        # billions of block records from a few hundred KB (refused before any is read).
        fit = (self.cab_size - CFHEADER.size) // (CFDATA.size + self._data_reserve)
        if total > fit:
            raise self._corrupt(f"its folders declare {total} data blocks, more than the {fit} that fit in "
                                f"{self.cab_size} bytes (folders would share data blocks)")
        if total > self.limits.max_blocks:
            raise PackageError("too-large", f"{self.path.name} has {total} data blocks, above the limit of "
                               f"{self.limits.max_blocks} (packers fill each block with 32 KiB)")

    def _parse_folder(self, handle: BinaryIO, index: int, data_offset: int, n_blocks: int,
                      type_compress: int) -> _Folder:
        compression = type_compress & 0x000F
        if compression not in COMPRESSION_NAMES:
            raise self._corrupt(f"folder {index} has unknown compression type {compression}")
        blocks, start, offset = [], 0, data_offset
        header_size = CFDATA.size + self._data_reserve
        fd = handle.fileno()
        for i in range(n_blocks):
            record = os.pread(fd, CFDATA.size, offset) if offset + CFDATA.size <= self.cab_size else b""
            if len(record) != CFDATA.size:
                raise self._corrupt(f"data block {i} of folder {index} lies outside the cabinet")
            checksum, packed, size = CFDATA.unpack(record)
            if offset + header_size + packed > self.cab_size:
                raise self._corrupt(f"data block {i} of folder {index} runs past the end of the cabinet")
            if compression in NATIVE:
                if size > BLOCK_MAX:
                    raise self._corrupt(f"data block {i} of folder {index} declares {size} bytes (max {BLOCK_MAX})")
                if compression == COMPRESSION_NONE and packed != size:
                    raise self._corrupt(f"stored data block {i} of folder {index} has {packed} bytes for {size}")
            blocks.append(_Block(offset, checksum, packed, size, start))
            start += size
            offset += header_size + packed
        return _Folder(index, compression, type_compress, tuple(blocks), start)

    def _parse_file(self, handle: BinaryIO, index: int, offset: int) -> int:
        record = self._read_at(handle, offset, CFFILE.size, f"file entry {index}")
        size, folder_offset, folder, date, time, attributes = CFFILE.unpack(record)
        offset += CFFILE.size
        raw = self._read_at(handle, offset, max(0, min(NAME_MAX, self.cab_size - offset)), f"the name of file {index}")
        end = raw.find(b"\0")
        if end < 0:
            raise self._corrupt(f"the name of file {index} is not terminated within {NAME_MAX} bytes")
        raw = raw[:end]
        if attributes & ATTR_NAME_IS_UTF:
            try:
                name = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise PackageError("unsafe-name", f"member name {raw!r} is flagged UTF-8 but is not") from None
        elif raw.isascii():
            name = raw.decode("ascii")
        else:  # makecab writes such names in the packer's code page: tools would guess differently
            raise PackageError("unsafe-name", f"member name {raw!r} has non-ASCII bytes but no UTF-8 flag, so its "
                               "encoding is unknown")
        if folder >= IFOLDER_CONTINUED:
            raise PackageError("multi-cabinet", f"{name!r} continues from or into another cabinet "
                               "(multi-cabinet set); repack its content as a single cabinet")
        if folder >= len(self.folders):
            raise self._corrupt(f"{name!r} is in folder {folder}, but there are {len(self.folders)}")
        if folder_offset + size > self.folders[folder].size:
            raise self._corrupt(f"{name!r} ({size} bytes at {folder_offset}) extends past the "
                                f"{self.folders[folder].size} bytes of its folder")
        self.members.append(CabMember(self, name.replace("\\", "/"), size, folder, folder_offset, (date, time)))
        return offset + end + 1

    def _check_names(self) -> None:
        seen: dict[str, str] = {}
        folders = {m.name.lower().rsplit("/", 1)[0] for m in self.members if "/" in m.name}
        folders |= {f.rsplit("/", i)[0] for f in folders for i in range(1, f.count("/") + 1)}
        for member in self.members:
            if member.name.lower() in folders:
                raise PackageError("unsafe-name", f"member name {member.name!r} is also the folder of other members")
            problem = unsafe_name_reason(member.name)
            if problem:
                raise PackageError("unsafe-name", f"member name {member.name!r} {problem}")
            key = member.name.lower()
            if key in seen:
                raise PackageError("duplicate-name", f"{self.path.name} has two members named {seen[key]!r} and "
                                   f"{member.name!r} (names are compared ignoring case)")
            seen[key] = member.name

    def _check_layout(self) -> None:
        """List members in decoding order (folder, offset) and refuse members that share bytes.

        Packers write the file table in that order and never overlap members; a cab that does either
        would make every member a fresh decode of its folder from the start (quadratic work).
        """
        self.members.sort(key=lambda m: (m.folder, m.offset))
        previous: CabMember | None = None
        for member in self.members:
            if member.size == 0:
                continue
            if previous is not None and previous.folder == member.folder and \
                    member.offset < previous.offset + previous.size:
                raise self._corrupt(f"members {previous.name!r} and {member.name!r} overlap in folder "
                                    f"{member.folder}")
            previous = member

    def _check_sizes(self) -> None:
        # Reaching a member means decoding its whole folder up to it, so both sums count (members
        # that overlap, refused later by _check_layout, count each time).
        declared = max(sum(m.size for m in self.members), sum(f.size for f in self.folders))
        limit = self.limits.max_total_size
        if declared > limit:
            raise PackageError("too-large", f"{self.path.name} expands to {declared} bytes, above the limit of "
                               f"{limit} bytes")
        ratio = declared / max(self.file_size, 1)
        if declared > self.limits.ratio_floor and ratio > self.limits.max_ratio:
            raise PackageError("decompression-bomb", f"{self.path.name} would expand {ratio:.0f} times "
                               f"({self.file_size} bytes to {declared}), above the limit of "
                               f"{self.limits.max_ratio:g}; this looks like a decompression bomb")

    # -- reading ---------------------------------------------------------------------------------

    def materialize(self) -> None:
        """Decode every member once into a private temporary directory; later opens read those files.

        This is how a whole cab gets verified before anything is staged without decoding it twice
        (the descriptions usually come last): one pass, constant memory, like ``cabextract -d``.
        """
        if self._decoded is not None:
            return
        target_dir = Path(self._tempdir()) / "native"
        buffer = memoryview(bytearray(CHUNK))
        for member in self.members:
            if self.folders[member.folder].compression not in NATIVE:
                continue
            target = target_dir / member.name
            target.parent.mkdir(parents=True, exist_ok=True)
            with self._open_member(member) as source, open(target, "xb") as out:
                while count := source.readinto(buffer):
                    out.write(buffer[:count])
        if any(folder.compression not in NATIVE for folder in self.folders):
            self._extract()
        self._decoded = target_dir

    def _tempdir(self) -> str:
        if self._tmp is None:
            self._tmp = tempfile.mkdtemp(prefix="devupdate-cab-", dir=self._workdir)
        return self._tmp

    def _open_member(self, member: CabMember) -> MemberStream:
        if self._closed:
            raise ValueError(f"{self.path.name} is closed")
        folder = self.folders[member.folder]
        if folder.compression not in NATIVE:
            self._extract()
            assert self._extracted is not None
            return open(self._extracted / member.name, "rb")  # noqa: SIM115 - the caller closes it
        if self._decoded is not None:
            return open(self._decoded / member.name, "rb")  # noqa: SIM115
        cursor = self._cursors.pop(folder.index, None)
        if cursor is None or cursor.pos > member.offset:
            if cursor is not None:
                cursor.close()
            cursor = _Cursor(self, folder, member.offset)
        return _MemberStream(self, cursor, member)

    def _release(self, cursor: _Cursor) -> None:
        """Keep a finished stream's position so the next member of the folder continues from it."""
        if self._closed:
            cursor.close()
            return
        previous = self._cursors.get(cursor.folder.index)
        if previous is not None and previous is not cursor:
            previous.close()
        self._cursors[cursor.folder.index] = cursor

    def _blocks(self, folder: _Folder, first: int) -> Generator[bytes, None, None]:
        """The folder's uncompressed blocks from block ``first`` on, checked against checksum and size.

        Nothing is decoded before its group of ``GROUP`` blocks has been checksum-verified.
        (A read-ahead thread for the checksums was measured slower: the GIL convoys.)
        """
        window: bytes | None = None  # libmspack's positional 32 KiB window (see _inflate)
        history: bytes | None = None  # the last 32 KiB of output, as zlib-based readers keep it
        for start, group, datas in self._groups(folder, first):
            for i, (block, data) in enumerate(zip(group, datas, strict=True), start):
                if folder.compression == COMPRESSION_NONE:
                    yield bytes(data)
                    continue
                out = self._inflate(folder, i, data, window, block.size)
                assert out is not None  # only a quiet decode answers None; this one raises instead
                if history is not window and history != window and out != self._inflate(
                        folder, i, data, history, block.size, quiet=True):
                    raise self._corrupt(f"MSZIP block {i} of folder {folder.index} follows a short block and "
                                        "refers back across it: cabextract and zlib-based readers would decode "
                                        "it differently")
                if len(out) == BLOCK_MAX:
                    window = history = out  # the usual case: both readings agree, nothing to compare
                else:
                    window = out + (window or bytes(BLOCK_MAX))[len(out):]
                    history = ((history or b"") + out)[-BLOCK_MAX:]
                yield out

    def _groups(self, folder: _Folder, first: int) -> Iterator[tuple[int, tuple[_Block, ...], list[memoryview]]]:
        """Verified groups of raw block data; the checksum is linear, so one fold checks a whole group."""
        header_size = CFDATA.size + self._data_reserve
        with open(self.path, "rb", buffering=0) as handle:
            for start in range(first, len(folder.blocks), GROUP):
                group = folder.blocks[start:start + GROUP]
                begin, end = group[0].offset, group[-1].offset + header_size + group[-1].packed
                handle.seek(begin)
                raw = handle.read(end - begin)
                if len(raw) != end - begin:
                    raise self._corrupt(f"data blocks {start}.. of folder {folder.index} are cut off")
                view = memoryview(raw)
                datas = [view[b.offset - begin + header_size:b.offset - begin + header_size + b.packed] for b in group]
                self._verify(folder, start, group, datas, [view[b.offset - begin:][4:8] for b in group])
                yield start, group, datas

    def _verify(self, folder: _Folder, start: int, group: tuple[_Block, ...], datas: list[memoryview],
                sizes: list[memoryview]) -> None:
        # A block is sound when the XOR of its words, its tail and its size word equals its checksum.
        # The blocks' word-aligned parts become integers that are XORed together and folded once for
        # the group (word k of every block lands on the same bits), the small terms go to ``small``;
        # only a group that does not come out 0 is checked block by block, to name the block.
        wide = small = 0
        words = 0
        for block, data, size_field in zip(group, datas, sizes, strict=True):
            if block.checksum:
                aligned = len(data) & ~3
                wide ^= int.from_bytes(data[:aligned], "little")
                words = max(words, aligned >> 2)
                small ^= _tail(data[aligned:]) ^ int.from_bytes(size_field, "little") ^ block.checksum
        if small ^ _fold(wide, words):
            for i, (block, data, size_field) in enumerate(zip(group, datas, sizes, strict=True), start):
                if block.checksum and checksum(size_field, checksum(data)) != block.checksum:
                    raise self._corrupt(f"data block {i} of folder {folder.index} fails its checksum")
            raise self._corrupt(f"data blocks {start}.. of folder {folder.index} fail their checksums")

    def _inflate(self, folder: _Folder, i: int, data: memoryview, window: bytes | None, declared: int,
                 quiet: bool = False) -> bytes | None:
        """One MSZIP block: a raw deflate stream after 'CK', with the previous 32 KiB as dictionary.

        libmspack writes each block into its 32 KiB window from position 0, so back-references
        before the block wrap into the previous window positionally; zlib takes the dictionary
        as linear history. The two agree whenever the previous block was a full 32 KiB — always,
        for Microsoft's and gcab's encoders. ``_blocks`` refuses blocks where they would not.
        ``quiet``: return None instead of raising (the second, comparison decode).
        """
        where = f"MSZIP block {i} of folder {folder.index}"
        if bytes(data[:2]) != b"CK":
            raise self._corrupt(f"{where} lacks its 'CK' signature")
        decoder = zlib.decompressobj(-zlib.MAX_WBITS, zdict=window) if window else zlib.decompressobj(-15)
        try:
            out = decoder.decompress(data[2:], declared + 1)  # never more than one byte past the declared size
        except zlib.error as exc:
            if quiet:
                return None
            raise self._corrupt(f"{where} does not decode ({exc})") from None
        if quiet:
            return out if decoder.eof and len(out) == declared else None
        if len(out) > declared:
            raise PackageError("decompression-bomb", f"{self.path.name}: {where} inflates past the {declared} "
                               "bytes it declares; stopped decompressing")
        if not decoder.eof or len(out) != declared:
            raise self._corrupt(f"{where} decodes to {len(out)} bytes, not the {declared} declared"
                                + ("" if decoder.eof else " (its deflate stream is cut off)"))
        return out

    def _extract(self) -> None:
        """Run cabextract once into a private directory; LZX/Quantum members are then read from there."""
        if self._extracted is not None:
            return
        other = sorted({f.compression_name.split(" ")[0] for f in self.folders if f.compression not in NATIVE})
        exe = shutil.which("cabextract")
        if exe is None:
            raise PackageError("unsupported-compression", f"{self.path.name} uses {' and '.join(other)} "
                               f"compression, which needs cabextract: {CABEXTRACT_HINT}")
        tmp = Path(self._tempdir())
        source = self.path.resolve()
        if self.file_size > self.cab_size:
            # Give cabextract exactly the cabinet we validated: it would also extract any cabinet
            # hidden in the trailing bytes.
            source = tmp / "input.cab"
            with open(self.path, "rb") as src, open(source, "wb") as dst:
                _copy_prefix(src, dst, self.cab_size)
        out = tmp / "cabextract"
        out.mkdir()
        command = [exe, "-q", "-d", str(out), str(source)]
        prlimit = shutil.which("prlimit")
        if prlimit:  # the kernel stops any file growing past the largest declared member (SIGXFSZ)
            command = [prlimit, f"--fsize={max([1, *(m.size for m in self.members)])}", "--", *command]
        try:
            proc = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True,
                                  timeout=self.limits.tool_timeout, check=False)
        except subprocess.TimeoutExpired:
            raise self._corrupt(f"cabextract did not finish within {self.limits.tool_timeout:g} s") from None
        if proc.returncode in (-signal.SIGXFSZ, 128 + signal.SIGXFSZ):
            raise PackageError("decompression-bomb", f"{self.path.name}: cabextract wrote more than a member "
                               "declares; stopped decompressing")
        if proc.returncode != 0:
            text = (proc.stderr + proc.stdout).decode("utf-8", "replace")
            text = text.replace(str(out) + "/", "").replace(str(source), self.path.name)
            detail = "; ".join(line.strip() for line in text.splitlines() if line.strip()) or "no message"
            raise self._corrupt(f"cabextract failed: {detail}")
        self._check_extracted(out)
        self._extracted = out

    def _check_extracted(self, out: Path) -> None:
        expected = {m.name: m.size for m in self.members}
        found = {}
        for root, _dirs, files in os.walk(out):
            for file_name in files:
                path = Path(root) / file_name
                found[path.relative_to(out).as_posix()] = path.lstat().st_size
        if found != expected:
            missing = sorted(set(expected) - set(found))
            extra = sorted(set(found) - set(expected))
            sizes = sorted(n for n in set(found) & set(expected) if found[n] != expected[n])
            raise self._corrupt(f"cabextract's output does not match the file table (missing {missing}, "
                                f"unexpected {extra}, wrong size {sizes})")


class _Cursor:
    """A position in one folder's uncompressed data, handed from member to member when read in order."""

    def __init__(self, cabinet: Cabinet, folder: _Folder, offset: int) -> None:
        self.folder = folder
        first = 0
        if folder.compression == COMPRESSION_NONE and folder.blocks:  # stored data can start at any block
            first = max(0, bisect.bisect_right(folder.blocks, offset, key=lambda block: block.start) - 1)
        self.pos = folder.blocks[first].start if folder.blocks else 0
        self._blocks = cabinet._blocks(folder, first)
        self._cabinet = cabinet
        self._buf = b""
        self._at = 0

    def _fill(self) -> bool:
        if self._at < len(self._buf):
            return True
        try:
            self._buf = next(self._blocks)
        except StopIteration:
            return False
        self._at = 0
        return True

    def skip_to(self, offset: int) -> None:
        while self.pos < offset:
            if not self._fill():
                raise self._cabinet._corrupt(f"folder {self.folder.index} ends before offset {offset}")
            step = min(len(self._buf) - self._at, offset - self.pos)
            self._at += step
            self.pos += step

    def readinto(self, view: memoryview) -> int:
        done = 0
        while done < len(view) and self._fill():
            step = min(len(self._buf) - self._at, len(view) - done)
            view[done:done + step] = self._buf[self._at:self._at + step]
            self._at += step
            done += step
        self.pos += done
        return done

    def close(self) -> None:
        self._blocks.close()


class _MemberStream(io.RawIOBase):
    """Exactly one member's bytes, read from a folder cursor."""

    def __init__(self, cabinet: Cabinet, cursor: _Cursor, member: CabMember) -> None:
        super().__init__()
        self._cabinet, self._cursor, self._member = cabinet, cursor, member
        self._left = member.size
        self._started = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        if not self._started:
            self._cursor.skip_to(self._member.offset)
            self._started = True
        view = memoryview(buffer).cast("B")[:self._left]
        got = self._cursor.readinto(view) if len(view) else 0
        if got == 0 and self._left:
            raise self._cabinet._corrupt(f"{self._member.name!r} ends {self._left} bytes early")
        self._left -= got
        return got

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0 or size > self._left:
            size = self._left
        buffer = bytearray(size)
        view, done = memoryview(buffer), 0
        while done < size:
            done += self.readinto(view[done:])
        return bytes(buffer)

    def readall(self) -> bytes:
        return self.read()

    def close(self) -> None:
        if not self.closed:
            if self._started:
                self._cabinet._release(self._cursor)
            else:
                self._cursor.close()
        super().close()


def read_cab(path: Path | str, limits: Limits = Limits(), *, workdir: Path | str | None = None
             ) -> Iterator[CabMember]:
    """Yield the members of a cab in cab order, for one sequential pass.

    A generator: the header checks run (and PackageError is raised) at the first ``next()``.
    Each member's ``open()`` works until the generator is exhausted or closed, which removes
    the cabextract fallback's temporary directory. For a longer-lived handle use ``Cabinet``.
    """
    with Cabinet(path, limits, workdir=workdir) as cabinet:
        yield from cabinet.members


def unsafe_name_reason(name: str) -> str | None:
    """Why a member name ('/'-separated) must not reach a file system, or None if it is fine."""
    if not name:
        return "is empty"
    for ch in name:
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn"):
            return f"contains the control, format or unassigned character U+{ord(ch):04X}"
    if name.startswith("/"):
        return "is absolute"
    if len(name) >= 2 and name[1] == ":" and name[0].isascii() and name[0].isalpha():
        return "starts with a drive letter"
    if ":" in name:
        return "contains ':' (drive letter or alternate data stream)"
    parts = name.split("/")
    if ".." in parts:
        return "contains '..'"
    if "" in parts or "." in parts:
        return "has an empty or '.' path component"
    return None


def checksum(data: bytes | memoryview, seed: int = 0) -> int:
    """The MS-CAB CFDATA checksum: XOR of little-endian 32-bit words, odd tail bytes big-endian."""
    view = memoryview(data).cast("B")
    aligned = len(view) & ~3
    return seed ^ _xor_words(view[:aligned]) ^ _tail(view[aligned:])


def _xor_words(aligned: memoryview) -> int:
    """XOR of little-endian 32-bit words, in big-integer arithmetic: the checksum of every block is
    on the import's hot path, and a Python loop over 8,192 words per block costs more than the
    decompression. The words become one integer (``int.from_bytes``, most of the cost), folded in
    half until one word remains; every step runs in C."""
    return _fold(int.from_bytes(aligned, "little"), len(aligned) >> 2)


def _fold(value: int, words: int) -> int:
    """XOR of the 32-bit words of ``value`` (at most ``words`` of them)."""
    while words > 1:
        half = (words + 1) >> 1
        shift = half << 5
        value = (value >> shift) ^ (value & _low_bits(shift))
        words = half
    return value


@functools.cache
def _low_bits(bits: int) -> int:
    return (1 << bits) - 1


def _tail(rest: memoryview) -> int:
    value = 0
    for byte in rest:  # 0..3 bytes, packed big-endian (the spec's quirk)
        value = (value << 8) | byte
    return value


def _copy_prefix(src: BinaryIO, dst: BinaryIO, length: int) -> None:
    while length > 0:
        chunk = src.read(min(length, CHUNK))
        if not chunk:
            break
        dst.write(chunk)
        length -= len(chunk)
