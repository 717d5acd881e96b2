"""Files for the identity document tests: real images and PDFs made here, and hostile ones
(decompression bombs, JavaScript, embedded files, encryption), plus MRZs with correct check
digits for made-up documents."""

from __future__ import annotations

import io
import os
import struct
import zlib
from datetime import date

from PIL import Image
from pypdf import PdfWriter
from pypdf.generic import DictionaryObject, NameObject, StreamObject, TextStringObject

from tradeguard.kyc.documents.mrz import check_digit

# ICAO Doc 9303's own worked examples (Part 4 TD3, Part 5 TD1, Part 6 TD2; Utopia, Anna
# Maria Eriksson, born 12 August 1974, document valid until 15 April 2012).
TD3_SPECIMEN = (
    "P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<\nL898902C36UTO7408122F1204159ZE184226B<<<<<10"
)
TD1_SPECIMEN = (
    "I<UTOD231458907<<<<<<<<<<<<<<<\n7408122F1204159UTO<<<<<<<<<<<6\nERIKSSON<<ANNA<MARIA<<<<<<<<<<"
)
TD2_SPECIMEN = "I<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<\nD231458907UTO7408122F1204159<<<<<<<6"
# A day the specimens were valid.
SPECIMEN_DAY = date(2010, 6, 1)


def jpeg(width: int = 640, height: int = 400) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 180, 160)).save(out, "JPEG", quality=80)
    return out.getvalue()


def png(width: int = 320, height: int = 200) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (20, 40, 60)).save(out, "PNG")
    return out.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data))
        + kind
        + data
        + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A PNG of a few hundred bytes declaring `width` x `height` pixels (all zero rows would
    inflate to ~10 GB at 100,000 x 100,000 greyscale)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\0" * (width + 1) * 4, 9)  # only the first rows: a bomb's start
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", rows)
        + _chunk(b"IEND", b"")
    )


def pdf(pages: int = 1) -> bytes:
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=595, height=842)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def padded_pdf(total_bytes: int) -> bytes:
    """A one-page PDF of about `total_bytes`: its content stream is random bytes (stored
    uncompressed, so nothing inflates)."""
    writer = PdfWriter()
    page = writer.add_blank_page(width=595, height=842)
    stream = StreamObject()
    stream._data = os.urandom(total_bytes)
    page[NameObject("/Contents")] = writer._add_object(stream)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def pdf_with_action(kind: str = "/JavaScript") -> bytes:
    """A PDF that runs an action when opened: JavaScript (`/JS`) or a launch (`/F`)."""
    writer = PdfWriter()
    writer.add_blank_page(width=595, height=842)
    action = DictionaryObject({NameObject("/S"): NameObject(kind)})
    if kind == "/JavaScript":
        action[NameObject("/JS")] = TextStringObject("app.alert('hello');")
    else:
        action[NameObject("/F")] = TextStringObject("calc.exe")
    writer.root_object[NameObject("/OpenAction")] = writer._add_object(action)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def pdf_with_javascript() -> bytes:
    return pdf_with_action("/JavaScript")


def pdf_with_attachment() -> bytes:
    writer = PdfWriter()
    writer.add_blank_page(width=595, height=842)
    writer.add_attachment("invoice.exe", b"MZ not really a program")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def encrypted_pdf() -> bytes:
    writer = PdfWriter()
    writer.add_blank_page(width=595, height=842)
    writer.encrypt("secret", algorithm="AES-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def pdf_flate_bomb(inflated_bytes: int = 96 * 1024 * 1024) -> bytes:
    """A one-page PDF whose content stream is a few hundred KB of Flate that inflates to
    `inflated_bytes` of zeros."""
    writer = PdfWriter()
    page = writer.add_blank_page(width=595, height=842)
    compressor = zlib.compressobj(9)
    block = bytes(1024 * 1024)
    parts = [compressor.compress(block) for _ in range(inflated_bytes // len(block))]
    parts.append(compressor.flush())
    stream = StreamObject()
    stream._data = b"".join(parts)
    stream[NameObject("/Filter")] = NameObject("/FlateDecode")
    page[NameObject("/Contents")] = writer._add_object(stream)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _field(value: str, width: int) -> str:
    return value.upper().replace(" ", "<")[:width].ljust(width, "<")


def td3(
    *,
    family: str = "ERIKSSON",
    given: str = "ANNA MARIA",
    number: str = "C01X00T47",
    state: str = "D<<",
    nationality: str = "D<<",
    birth: str = "740812",
    sex: str = "F",
    expiry: str = "341231",
    code: str = "P<",
) -> str:
    """A TD3 (passport) MRZ with every check digit right (Doc 9303 Part 4)."""
    names = _field(f"{family}<<{given}".replace(" ", "<"), 39)
    line1 = _field(code, 2) + state + names
    number_field = _field(number, 9)
    optional = "<" * 14
    body = (
        number_field
        + check_digit(number_field)
        + nationality
        + birth
        + check_digit(birth)
        + sex
        + expiry
        + check_digit(expiry)
        + optional
        + "<"
    )
    composite = check_digit(body[0:10] + body[13:20] + body[21:43])
    return line1 + "\n" + body + composite
