"""What an uploaded file really is: its type from its content (magic bytes, then a real
parse with Pillow or pypdf), never from its name or declared Content-Type, and the limits
that keep a hostile file from costing memory or time (OWASP File Upload Cheat Sheet).

Images: the dimensions are read from the header and bounded before any pixel is decoded
(a small PNG can declare 100,000 x 100,000 pixels: a decompression bomb); Pillow's own
DecompressionBombError and, where warnings are errors, DecompressionBombWarning become the
same refusal. The configured pixel limit is kept below Pillow's MAX_IMAGE_PIXELS (config.py),
so any image Pillow would warn about is one we refuse anyway.

PDFs: encrypted files are refused (they cannot be checked), as is any object naming
JavaScript, a launch or other active action, an embedded file, XFA or rich media; the page
count is bounded; every stream is inflated under pypdf's per-context output limits and a
total budget, so a flate bomb fails here and not in a reviewer's viewer.

Pure but for Pillow and pypdf: bytes in, a verdict out; run it off the event loop.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass

import pypdf
from PIL import Image, UnidentifiedImageError
from pypdf.errors import LimitReachedError, PyPdfError
from pypdf.generic import (
    ArrayObject,
    DictionaryObject,
    IndirectObject,
    NameObject,
    PdfObject,
    StreamObject,
)

from tradeguard.kyc.documents.domain import (
    DECLARED_TYPES,
    EXTENSIONS,
    CompressedContentTooLarge,
    DetectedType,
    FileTooLarge,
    FileTypeMismatch,
    ImageTooLarge,
    Refusal,
    TooManyPages,
    UnreadableDocument,
    UnsafeDocument,
    UnsupportedFileType,
)

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PDF_MAGIC = b"%PDF-"
# Objects and values walked in one PDF: beyond this a file is too complex to check.
MAX_PDF_NODES = 2_000_000

# Names whose presence anywhere in a PDF refuses it, with the reason.
_FORBIDDEN_KEYS: dict[str, Refusal] = {
    "/JS": Refusal.PDF_JAVASCRIPT,
    "/JavaScript": Refusal.PDF_JAVASCRIPT,
    "/Launch": Refusal.PDF_LAUNCH_ACTION,
    "/EmbeddedFiles": Refusal.PDF_EMBEDDED_FILE,
    "/EmbeddedFile": Refusal.PDF_EMBEDDED_FILE,
    "/EF": Refusal.PDF_EMBEDDED_FILE,
    "/XFA": Refusal.PDF_ACTIVE_CONTENT,
    "/RichMedia": Refusal.PDF_ACTIVE_CONTENT,
}
# Action types (/S) refused.
_FORBIDDEN_ACTIONS: dict[str, Refusal] = {
    "/JavaScript": Refusal.PDF_JAVASCRIPT,
    "/Launch": Refusal.PDF_LAUNCH_ACTION,
    "/GoToE": Refusal.PDF_EMBEDDED_FILE,
    "/ImportData": Refusal.PDF_ACTIVE_CONTENT,
    "/SubmitForm": Refusal.PDF_ACTIVE_CONTENT,
    "/RichMediaExecute": Refusal.PDF_ACTIVE_CONTENT,
    "/Rendition": Refusal.PDF_ACTIVE_CONTENT,
}
_FORBIDDEN_TYPES: dict[str, Refusal] = {
    "/EmbeddedFile": Refusal.PDF_EMBEDDED_FILE,
    "/RichMedia": Refusal.PDF_ACTIVE_CONTENT,
}
_DETAIL: dict[Refusal, str] = {
    Refusal.PDF_JAVASCRIPT: "PDFs with JavaScript are not accepted",
    Refusal.PDF_LAUNCH_ACTION: "PDFs with launch actions are not accepted",
    Refusal.PDF_EMBEDDED_FILE: "PDFs with embedded files are not accepted",
    Refusal.PDF_ACTIVE_CONTENT: "PDFs with forms, rich media or other active content are "
    "not accepted",
}


@dataclass(frozen=True, slots=True)
class DocumentLimits:
    max_bytes: int
    max_pixels: int
    max_pages: int
    # The most all of a PDF's streams may inflate to, together (and each alone).
    max_inflated_bytes: int


@dataclass(frozen=True, slots=True)
class Inspection:
    detected: DetectedType
    size_bytes: int
    sha256: str
    width: int | None = None
    height: int | None = None
    pages: int | None = None


def sniff(content: bytes) -> DetectedType | None:
    """The type the first bytes announce (JPEG SOI, PNG signature, PDF header)."""
    if content.startswith(JPEG_MAGIC):
        return DetectedType.JPEG
    if content.startswith(PNG_MAGIC):
        return DetectedType.PNG
    if content.startswith(PDF_MAGIC):
        return DetectedType.PDF
    return None


def _declared_matches(detected: DetectedType, declared_type: str | None) -> bool:
    if declared_type is None:
        return True
    essence = declared_type.split(";", 1)[0].strip().lower()
    # A client that could not tell says so; it claims nothing to contradict.
    return essence in {"", "application/octet-stream"} or essence in DECLARED_TYPES[detected]


def _extension_matches(detected: DetectedType, filename: str | None) -> bool:
    if not filename:
        return True
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    if "." not in base:
        return True
    return base.rsplit(".", 1)[1].lower() in EXTENSIONS[detected]


def inspect_document(
    content: bytes,
    *,
    declared_type: str | None,
    filename: str | None,
    limits: DocumentLimits,
) -> Inspection:
    """The file's verdict: its detected type and measures, or a DocumentRefused."""
    if len(content) > limits.max_bytes:
        raise FileTooLarge(
            Refusal.FILE_TOO_LARGE,
            f"the file is larger than the limit of {limits.max_bytes} bytes",
            max_bytes=limits.max_bytes,
        )
    if not content:
        raise UnreadableDocument(Refusal.FILE_EMPTY, "the file is empty")
    detected = sniff(content)
    if detected is None:
        raise UnsupportedFileType(
            Refusal.UNSUPPORTED_TYPE, "only JPEG, PNG and PDF files are accepted"
        )
    if not _declared_matches(detected, declared_type):
        raise FileTypeMismatch(
            Refusal.DECLARED_TYPE_MISMATCH,
            f"the file's content is {detected.value}, not the declared type",
            detected_type=detected.value,
        )
    if not _extension_matches(detected, filename):
        raise FileTypeMismatch(
            Refusal.EXTENSION_MISMATCH,
            f"the file's content is {detected.value}, which its name's extension is not",
            detected_type=detected.value,
        )
    digest = hashlib.sha256(content).hexdigest()
    if detected is DetectedType.PDF:
        pages = _inspect_pdf(content, limits)
        return Inspection(detected, len(content), digest, pages=pages)
    width, height = _inspect_image(content, detected, limits)
    return Inspection(detected, len(content), digest, width=width, height=height, pages=1)


# Images -------------------------------------------------------------------------------------


def _image_too_large(limits: DocumentLimits) -> ImageTooLarge:
    return ImageTooLarge(
        Refusal.IMAGE_TOO_LARGE,
        f"the image has more than {limits.max_pixels} pixels",
        max_pixels=limits.max_pixels,
    )


def _inspect_image(
    content: bytes, detected: DetectedType, limits: DocumentLimits
) -> tuple[int, int]:
    formats = ["JPEG"] if detected is DetectedType.JPEG else ["PNG"]
    try:
        # Image.open reads the header only: the size is known before any pixel is decoded.
        with Image.open(io.BytesIO(content), formats=formats) as image:
            width, height = image.size
            if width <= 0 or height <= 0:
                raise UnreadableDocument(Refusal.UNREADABLE, "the image has no pixels")
            if width * height > limits.max_pixels:
                raise _image_too_large(limits)
            image.verify()  # chunk checksums and structure, without decoding
        with Image.open(io.BytesIO(content), formats=formats) as image:
            image.load()  # a real decode: a truncated or corrupt image fails here
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _image_too_large(limits) from None
    except ValueError as exc:
        # PngImagePlugin refuses text chunks that inflate past MAX_TEXT_CHUNK this way.
        if "too large" in str(exc).lower():
            raise CompressedContentTooLarge(
                Refusal.COMPRESSED_TOO_LARGE, "a compressed part of the image inflates too far"
            ) from None
        raise UnreadableDocument(Refusal.UNREADABLE, "the image could not be decoded") from None
    except (UnidentifiedImageError, OSError, SyntaxError, EOFError, IndexError, TypeError):
        raise UnreadableDocument(Refusal.UNREADABLE, "the image could not be decoded") from None
    return width, height


# PDFs ---------------------------------------------------------------------------------------


def _inspect_pdf(content: bytes, limits: DocumentLimits) -> int:
    bound = limits.max_inflated_bytes
    try:
        with pypdf.apply_configuration(
            zlib_maximum_output_length=bound,
            lzw_maximum_output_length=bound,
            run_length_maximum_output_length=bound,
            brotli_maximum_output_length=bound,
            jbig2_maximum_output_length=bound,
            array_based_stream_maximum_output_length=bound,
            image_maximum_buffer_size=bound,
            stream_decoding_work_maximum_length=bound,
            xmp_maximum_input_length=min(bound, 5_000_000),
            # Never run an external decoder on an uploaded file.
            jbig2dec_binary=None,
        ):
            reader = pypdf.PdfReader(io.BytesIO(content), strict=False)
            if reader.is_encrypted:
                raise UnsafeDocument(
                    Refusal.PDF_ENCRYPTED, "encrypted or password-protected PDFs are not accepted"
                )
            # Active content first: a hostile file is named for what it is.
            _scan_objects(reader, limits)
            pages = len(reader.pages)
    except LimitReachedError:
        raise CompressedContentTooLarge(
            Refusal.COMPRESSED_TOO_LARGE,
            f"a compressed stream inflates beyond {bound} bytes",
            max_inflated_bytes=bound,
        ) from None
    except (
        PyPdfError,
        ValueError,
        KeyError,
        TypeError,
        AttributeError,
        IndexError,
        RecursionError,
    ):
        raise UnreadableDocument(Refusal.UNREADABLE, "the PDF could not be read") from None
    if pages < 1:
        raise UnreadableDocument(Refusal.UNREADABLE, "the PDF has no pages")
    if pages > limits.max_pages:
        raise TooManyPages(
            Refusal.TOO_MANY_PAGES,
            f"the PDF has {pages} pages; at most {limits.max_pages} are accepted",
            max_pages=limits.max_pages,
            pages=pages,
        )
    return pages


def _object_refs(reader: pypdf.PdfReader) -> Iterator[IndirectObject]:
    for generation, numbers in reader.xref.items():
        for number in numbers:
            yield IndirectObject(number, generation, reader)
    for number in reader.xref_objStm:
        yield IndirectObject(number, 0, reader)


def _refuse(reason: Refusal) -> UnsafeDocument:
    return UnsafeDocument(reason, _DETAIL[reason])


def _scan_objects(reader: pypdf.PdfReader, limits: DocumentLimits) -> None:
    """Walk every object of the file (not only those reachable from the pages: a hidden
    object still reaches a viewer through a name tree or an action)."""
    inflated = 0
    nodes = 0
    seen: set[int] = set()
    roots: list[PdfObject | None] = [reader.trailer]
    for ref in _object_refs(reader):
        if ref.idnum in seen:
            continue
        seen.add(ref.idnum)
        roots.append(reader.get_object(ref))
    for root in roots:
        stack: list[PdfObject | None] = [root]
        while stack:
            node = stack.pop()
            nodes += 1
            if nodes > MAX_PDF_NODES:
                raise UnreadableDocument(Refusal.UNREADABLE, "the PDF is too complex to check")
            if isinstance(node, DictionaryObject):
                _check_dictionary(node)
                stack.extend(
                    value for value in node.values() if not isinstance(value, IndirectObject)
                )
                if isinstance(node, StreamObject):
                    inflated += _inflated_length(node)
                    if inflated > limits.max_inflated_bytes:
                        raise LimitReachedError("inflated total")
            elif isinstance(node, ArrayObject):
                stack.extend(value for value in node if not isinstance(value, IndirectObject))


def _check_dictionary(node: DictionaryObject) -> None:
    for key in node:
        reason = _FORBIDDEN_KEYS.get(str(key))
        if reason is not None:
            raise _refuse(reason)
    action = node.get("/S")
    if isinstance(action, NameObject) and str(action) in _FORBIDDEN_ACTIONS:
        raise _refuse(_FORBIDDEN_ACTIONS[str(action)])
    kind = node.get("/Type")
    if isinstance(kind, NameObject) and str(kind) in _FORBIDDEN_TYPES:
        raise _refuse(_FORBIDDEN_TYPES[str(kind)])


def _inflated_length(stream: StreamObject) -> int:
    try:
        return len(stream.get_data())
    except (NotImplementedError, pypdf.errors.DependencyError):
        # An image codec pypdf does not run (JBIG2 without an external decoder): the data
        # stays compressed, as the file's own size bounds it.
        return len(stream._data or b"")
