"""Split a coded image file into its image-dependent payload and rebuild the file from it.

A real link negotiates the codec configuration (codec, quality, height, width) once; everything a file
holds that depends only on that configuration is then known to the receiver and need not be sent. Each
``split_*`` function returns the payload of a full file; each ``join_*`` function rebuilds the full file
byte-exactly from the payload plus ``template``, a file coded with the *same* configuration from a
dummy image (what the receiver can generate itself). What each format assumes known is documented on
its functions.
"""

from __future__ import annotations

import struct

_JPEG_EOI = b"\xff\xd9"
_JPEG_SOS = 0xDA


def _jpeg_header_length(data: bytes) -> int:
    """Byte length of SOI..SOS (the SOS segment included): where the entropy-coded segment starts."""
    if data[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG file (no SOI marker)")
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise ValueError(f"JPEG marker expected at byte {pos}")
        marker = data[pos + 1]
        length = struct.unpack(">H", data[pos + 2:pos + 4])[0]
        pos += 2 + length
        if marker == _JPEG_SOS:
            return pos
    raise ValueError("JPEG file has no SOS marker")


def split_jpeg(data: bytes) -> bytes:
    """Payload = the entropy-coded segment of a baseline JPEG (between SOS and EOI).

    Known at the receiver: SOI, APP0/JFIF, the quantisation tables of the quality, the standard Huffman
    tables (``optimize=False``), SOF (size, 4:2:0 sampling) and the SOS header, and the closing EOI.
    """
    if not data.endswith(_JPEG_EOI):
        raise ValueError("JPEG file does not end with EOI")
    return data[_jpeg_header_length(data):-2]


def join_jpeg(payload: bytes, template: bytes) -> bytes:
    """Rebuild the JPEG file: the template's SOI..SOS headers, the payload, EOI."""
    return template[:_jpeg_header_length(template)] + payload + _JPEG_EOI


# WebP lossy, simple format: 'RIFF' size 'WEBP' 'VP8 ' size | frame tag (3) | 9d 01 2a | w (2) | h (2) | ...
_VP8_START_CODE = b"\x9d\x01\x2a"
_VP8_FIXED_START = 3  # the 3-byte frame tag carries the image-dependent first-partition size
_VP8_FIXED_END = 10   # start code and the 14-bit width/height (scale 0) depend on the size only


def _webp_vp8_chunk(data: bytes) -> bytes:
    if data[:4] != b"RIFF" or data[8:16] != b"WEBPVP8 ":
        raise ValueError("not a simple-format lossy WebP file (RIFF/WEBP/'VP8 ')")
    size = struct.unpack("<I", data[16:20])[0]
    return data[20:20 + size]


def split_webp(data: bytes) -> bytes:
    """Payload = the VP8 frame tag (3 bytes: key-frame flag, version, first-partition size) + the VP8
    data after the key-frame header.

    Known at the receiver: the RIFF/WEBP/'VP8 ' chunk headers (their sizes follow from the payload
    length), the padding byte of odd-sized chunks, the VP8 start code and the 14-bit width and height.
    """
    vp8 = _webp_vp8_chunk(data)
    return vp8[:_VP8_FIXED_START] + vp8[_VP8_FIXED_END:]


def join_webp(payload: bytes, template: bytes) -> bytes:
    """Rebuild the WebP file from the payload and the template's start code and dimensions."""
    vp8 = payload[:_VP8_FIXED_START] + _webp_vp8_chunk(template)[_VP8_FIXED_START:_VP8_FIXED_END] \
        + payload[_VP8_FIXED_START:]
    chunk = b"VP8 " + struct.pack("<I", len(vp8)) + vp8 + b"\x00" * (len(vp8) % 2)
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


# ISOBMFF (HEIF/AVIF): ftyp, meta (iloc points into mdat), mdat holding the one coded image item.

def _top_level_boxes(data: bytes) -> dict[str, tuple[int, int]]:
    boxes, pos = {}, 0
    while pos + 8 <= len(data):
        size = struct.unpack(">I", data[pos:pos + 4])[0]
        kind = data[pos + 4:pos + 8].decode("latin-1")
        if size < 8:
            raise ValueError(f"unsupported ISOBMFF box size {size} at byte {pos}")
        boxes[kind] = (pos, size)
        pos += size
    return boxes


def _iloc_extent_length_field(data: bytes) -> tuple[int, int]:
    """(byte offset, byte size) of the extent-length field of the single item's single extent."""
    meta_pos, meta_size = _top_level_boxes(data)["meta"]
    pos, end = meta_pos + 12, meta_pos + meta_size  # meta is a full box: 4 bytes version/flags
    while pos < end:
        size = struct.unpack(">I", data[pos:pos + 4])[0]
        if data[pos + 4:pos + 8] == b"iloc":
            break
        pos += size
    else:
        raise ValueError("ISOBMFF meta box has no iloc box")
    version = data[pos + 8]
    p = pos + 12
    offset_size, length_size = data[p] >> 4, data[p] & 15
    base_offset_size, index_size = data[p + 1] >> 4, (data[p + 1] & 15) if version in (1, 2) else 0
    p += 2
    if version < 2:
        item_count = struct.unpack(">H", data[p:p + 2])[0]
        p += 2
    else:
        item_count = struct.unpack(">I", data[p:p + 4])[0]
        p += 4
    if item_count != 1:
        raise ValueError(f"expected one item in iloc; got {item_count}")
    p += 2 if version < 2 else 4  # item_ID
    p += 2 if version in (1, 2) else 0  # construction_method
    p += 2 + base_offset_size  # data_reference_index, base_offset
    extent_count = struct.unpack(">H", data[p:p + 2])[0]
    if extent_count != 1:
        raise ValueError(f"expected one extent in iloc; got {extent_count}")
    p += 2 + index_size + offset_size
    if length_size not in (4, 8):
        raise ValueError(f"unsupported iloc length_size {length_size}")
    return p, length_size


def _mdat_content(data: bytes) -> bytes:
    pos, size = _top_level_boxes(data)["mdat"]
    if pos + size != len(data):
        raise ValueError("expected mdat to be the last box of the file")
    return data[pos + 8:pos + size]


def _join_isobmff(mdat_content: bytes, template: bytes) -> bytes:
    """The template's ftyp+meta with the iloc extent length patched, then an mdat with new content."""
    mdat_pos, _ = _top_level_boxes(template)["mdat"]
    field, width = _iloc_extent_length_field(template)
    head = bytearray(template[:mdat_pos])
    head[field:field + width] = len(mdat_content).to_bytes(width, "big")
    return bytes(head) + struct.pack(">I", 8 + len(mdat_content)) + b"mdat" + mdat_content


def split_heif(data: bytes) -> bytes:
    """Payload = the one HEVC slice NAL unit in mdat, without its 4-byte length prefix.

    Known at the receiver: ftyp; the whole meta box (hdlr, iloc, iinf, pitm, and the item properties:
    hvcC with VPS/SPS/PPS, colr, ispe, clap, pixi, ipma) whose only image-dependent field, the iloc
    extent length, follows from the payload length; the mdat header; the NAL length prefix.
    """
    content = _mdat_content(data)
    nal_length = struct.unpack(">I", content[:4])[0]
    if 4 + nal_length != len(content):
        raise ValueError("expected exactly one NAL unit in the HEIF mdat")
    return content[4:]


def join_heif(payload: bytes, template: bytes) -> bytes:
    """Rebuild the HEIF file from the slice NAL unit and the template's container."""
    return _join_isobmff(struct.pack(">I", len(payload)) + payload, template)


def _av1_obu_length(data: bytes, pos: int) -> int:
    """Total byte length of the OBU at ``pos`` (header, optional extension, leb128 size, body)."""
    header = data[pos]
    if not header & 0x02:
        raise ValueError("AV1 OBU without obu_has_size_field")
    p = pos + 1 + ((header >> 2) & 1)
    size, shift = 0, 0
    while True:
        byte = data[p]
        p += 1
        size |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return p + size - pos


def _av1_known_prefix(content: bytes) -> bytes:
    """The leading temporal-delimiter and sequence-header OBUs (fixed for the configuration)."""
    pos = 0
    while pos < len(content) and (content[pos] >> 3) & 15 in (1, 2):  # OBU_SEQUENCE_HEADER, OBU_TD
        pos += _av1_obu_length(content, pos)
    if pos == 0:
        raise ValueError("expected the AVIF mdat to start with a sequence header or temporal delimiter")
    return content[:pos]


def split_avif(data: bytes) -> bytes:
    """Payload = the mdat content after the AV1 temporal-delimiter and sequence-header OBUs (the frame OBU).

    Known at the receiver: ftyp; the whole meta box (hdlr, pitm, iloc, iinf, ispe, pixi, av1C, colr,
    ipma) whose only image-dependent field, the iloc extent length, follows from the payload length;
    the mdat header; the temporal delimiter and the sequence header OBU (fixed for the configuration).
    """
    content = _mdat_content(data)
    return content[len(_av1_known_prefix(content)):]


def join_avif(payload: bytes, template: bytes) -> bytes:
    """Rebuild the AVIF file from the frame OBU and the template's container and leading OBUs."""
    return _join_isobmff(_av1_known_prefix(_mdat_content(template)) + payload, template)
