"""Reading a document upload (multipart/form-data, RFC 7578) as it streams in, bounded.

Starlette's form parser spools a file part of any size to disk before the route runs; this
one counts as it reads and stops at the first byte past the limit, so an oversized body
(declared or not: chunked, without Content-Length) costs at most the limit in memory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from tradeguard.kyc.documents.domain import FileTooLarge, InvalidUploadForm, Refusal

FILE_FIELD = "file"
TEXT_FIELDS = frozenset({"kind", "side", "mrz"})
MAX_TEXT_FIELD_BYTES = 1024
MAX_PARTS = 8
# Room for the boundaries, part headers and text fields around the file.
ENVELOPE_BYTES = 64 * 1024


@dataclass(slots=True)
class UploadForm:
    fields: dict[str, str] = field(default_factory=dict)
    filename: str | None = None
    content_type: str | None = None
    content: bytearray = field(default_factory=bytearray)
    has_file: bool = False


@dataclass(slots=True)
class _Part:
    name: str | None = None
    filename: str | None = None
    content_type: str | None = None
    data: bytearray = field(default_factory=bytearray)


class _Collector:
    def __init__(self, max_file_bytes: int) -> None:
        self.max_file_bytes = max_file_bytes
        self.form = UploadForm()
        self.parts = 0
        self.part = _Part()
        self.header_field = bytearray()
        self.header_value = bytearray()
        self.error: Exception | None = None

    def _fail(self, error: Exception) -> None:
        if self.error is None:
            self.error = error

    def on_part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            self._fail(InvalidUploadForm(Refusal.FORM_INVALID, "too many form parts"))
        self.part = _Part()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        name = bytes(self.header_field).decode("latin-1").strip().lower()
        value = bytes(self.header_value).decode("latin-1").strip()
        self.header_field.clear()
        self.header_value.clear()
        if name == "content-disposition":
            _, options = parse_options_header(value)
            raw_name = options.get(b"name")
            raw_filename = options.get(b"filename")
            self.part.name = raw_name.decode("utf-8", "replace") if raw_name else None
            self.part.filename = (
                raw_filename.decode("utf-8", "replace") if raw_filename is not None else None
            )
        elif name == "content-type":
            self.part.content_type = value

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.error is not None:
            return
        part = self.part
        if part.name == FILE_FIELD:
            if self.form.has_file:
                self._fail(InvalidUploadForm(Refusal.FORM_INVALID, "send one file per upload"))
                return
            if len(self.form.content) + (end - start) > self.max_file_bytes:
                self._fail(_too_large(self.max_file_bytes))
                return
            self.form.content += data[start:end]
            return
        if part.name in TEXT_FIELDS:
            if len(part.data) + (end - start) > MAX_TEXT_FIELD_BYTES:
                self._fail(
                    InvalidUploadForm(Refusal.FORM_INVALID, f"the {part.name} field is too long")
                )
                return
            part.data += data[start:end]
        # Unknown parts are read past and dropped.

    def on_part_end(self) -> None:
        part = self.part
        if part.name == FILE_FIELD and not self.form.has_file:
            self.form.has_file = True
            self.form.filename = part.filename
            self.form.content_type = part.content_type
        elif part.name in TEXT_FIELDS:
            try:
                self.form.fields[part.name] = bytes(part.data).decode("utf-8")
            except UnicodeDecodeError:
                self._fail(
                    InvalidUploadForm(Refusal.FORM_INVALID, f"the {part.name} field is not UTF-8")
                )


def _too_large(max_bytes: int) -> FileTooLarge:
    return FileTooLarge(
        Refusal.FILE_TOO_LARGE,
        f"the file is larger than the limit of {max_bytes} bytes",
        max_bytes=max_bytes,
    )


def boundary_of(content_type: str | None) -> bytes:
    if not content_type:
        raise InvalidUploadForm(Refusal.FORM_INVALID, "send the document as multipart/form-data")
    kind, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise InvalidUploadForm(Refusal.FORM_INVALID, "send the document as multipart/form-data")
    return boundary


async def read_upload(
    content_type: str | None, body: AsyncIterator[bytes], *, max_file_bytes: int
) -> UploadForm:
    """The form's text fields and its one file, refusing a file over `max_file_bytes` at
    the first byte past it and a body over the limit plus the form's envelope."""
    collector = _Collector(max_file_bytes)
    parser = MultipartParser(
        boundary_of(content_type),
        {
            "on_part_begin": collector.on_part_begin,
            "on_header_field": collector.on_header_field,
            "on_header_value": collector.on_header_value,
            "on_header_end": collector.on_header_end,
            "on_part_data": collector.on_part_data,
            "on_part_end": collector.on_part_end,
        },
    )
    received = 0
    async for chunk in body:
        received += len(chunk)
        if received > max_file_bytes + ENVELOPE_BYTES:
            raise _too_large(max_file_bytes)
        try:
            parser.write(chunk)
        except MultipartParseError:
            raise InvalidUploadForm(
                Refusal.FORM_INVALID, "the multipart body could not be parsed"
            ) from None
        if collector.error is not None:
            raise collector.error
    try:
        parser.finalize()
    except MultipartParseError:
        raise InvalidUploadForm(Refusal.FORM_INVALID, "the multipart body is incomplete") from None
    if collector.error is not None:
        raise collector.error
    if not collector.form.has_file:
        raise InvalidUploadForm(Refusal.FORM_INVALID, "the form has no file part")
    return collector.form
