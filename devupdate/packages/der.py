"""A minimal ASN.1 DER/BER reader, enough to walk PKCS#7 catalogs.

cryptography can load the certificates of a PKCS#7 blob but not its SignerInfos or content, so
the catalog check reads those itself. Bounded: nesting depth and total size are limited, so a
hostile catalog cannot recurse or allocate without end.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_DEPTH = 64

INTEGER, BIT_STRING, OCTET_STRING, NULL, OID, SEQUENCE, SET = 0x02, 0x03, 0x04, 0x05, 0x06, 0x30, 0x31


class DerError(ValueError):
    pass


@dataclass(frozen=True)
class Node:
    """One TLV: ``tag`` is the identifier octet (low tag numbers only), ``raw`` the whole encoding."""

    data: bytes
    tag: int
    start: int  # of the identifier octet
    content: int  # of the first content octet
    end: int  # past the last content octet
    after: int  # past the whole TLV (differs from end for indefinite lengths: the 00 00)
    depth: int = 0

    @property
    def constructed(self) -> bool:
        return bool(self.tag & 0x20)

    @property
    def value(self) -> bytes:
        return self.data[self.content:self.end]

    @property
    def raw(self) -> bytes:
        return self.data[self.start:self.after]

    def children(self) -> list[Node]:
        if not self.constructed:
            raise DerError(f"tag 0x{self.tag:02x} is primitive")
        nodes, offset = [], self.content
        while offset < self.end:
            node = read(self.data, offset, self.end, self.depth + 1)
            nodes.append(node)
            offset = node.after
        return nodes

    def is_context(self, number: int) -> bool:
        return (self.tag & 0xC0) == 0x80 and (self.tag & 0x1F) == number

    def octets(self) -> bytes:
        """OCTET STRING contents, joining BER segments."""
        if self.tag == OCTET_STRING:
            return self.value
        if self.tag == OCTET_STRING | 0x20:
            return b"".join(child.octets() for child in self.children())
        raise DerError(f"expected an OCTET STRING, found tag 0x{self.tag:02x}")

    def oid(self) -> str:
        if self.tag != OID or not self.value:
            raise DerError("expected an OBJECT IDENTIFIER")
        arcs, value = [], 0
        for byte in self.value:
            value = (value << 7) | (byte & 0x7F)
            if not byte & 0x80:
                arcs.append(value)
                value = 0
        first = min(arcs[0] // 40, 2)
        return ".".join(map(str, [first, arcs[0] - 40 * first, *arcs[1:]]))

    def integer(self) -> int:
        if self.tag != INTEGER or not self.value:
            raise DerError("expected an INTEGER")
        return int.from_bytes(self.value, "big", signed=True)


def read(data: bytes, offset: int = 0, limit: int | None = None, depth: int = 0) -> Node:
    """The TLV at ``offset`` (which must end by ``limit``)."""
    limit = len(data) if limit is None else limit
    if depth > MAX_DEPTH:
        raise DerError("nested too deeply")
    if offset + 2 > limit:
        raise DerError("truncated")
    tag = data[offset]
    if tag & 0x1F == 0x1F:
        raise DerError("high tag numbers are not used in catalogs")
    length_octet, pos = data[offset + 1], offset + 2
    if length_octet == 0x80:  # BER indefinite length: contents end at 00 00
        if not tag & 0x20:
            raise DerError("indefinite length on a primitive")
        cursor = pos
        while True:
            if cursor + 2 > limit:
                raise DerError("unterminated indefinite length")
            if data[cursor] == 0 and data[cursor + 1] == 0:
                return Node(data, tag, offset, pos, cursor, cursor + 2, depth)
            cursor = read(data, cursor, limit, depth + 1).after
    if length_octet & 0x80:
        count = length_octet & 0x7F
        if count > 4 or pos + count > limit:
            raise DerError("bad length")
        length = int.from_bytes(data[pos:pos + count], "big")
        pos += count
    else:
        length = length_octet
    if pos + length > limit:
        raise DerError("truncated")
    return Node(data, tag, offset, pos, pos + length, pos + length, depth)
