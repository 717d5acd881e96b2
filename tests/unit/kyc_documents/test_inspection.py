"""Upload checks: the type from the content, and the limits that stop hostile files."""

from __future__ import annotations

import pytest

from tests.support.kyc_files import (
    encrypted_pdf,
    jpeg,
    pdf,
    pdf_flate_bomb,
    pdf_with_action,
    pdf_with_attachment,
    pdf_with_javascript,
    png,
    png_bomb,
)
from tradeguard.kyc.documents.domain import (
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
from tradeguard.kyc.documents.inspection import DocumentLimits, inspect_document

pytestmark = pytest.mark.spec("KYC-2")

LIMITS = DocumentLimits(
    max_bytes=10 * 1024 * 1024,
    max_pixels=40_000_000,
    max_pages=10,
    max_inflated_bytes=64 * 1024 * 1024,
)


def _inspect(content: bytes, declared: str | None = None, name: str | None = None):  # type: ignore[no-untyped-def]
    return inspect_document(content, declared_type=declared, filename=name, limits=LIMITS)


@pytest.mark.spec("KYC-2")
class TestAccepted:
    def test_jpeg_png_and_pdf_are_recognised_by_content(self) -> None:
        image = _inspect(jpeg(640, 400), "image/jpeg", "id.jpg")
        assert (image.detected, image.width, image.height) == (DetectedType.JPEG, 640, 400)
        assert len(image.sha256) == 64
        assert _inspect(png(), "image/png", "id.png").detected is DetectedType.PNG
        document = _inspect(pdf(3), "application/pdf", "bill.pdf")
        assert (document.detected, document.pages) == (DetectedType.PDF, 3)

    def test_an_undeclared_type_and_nameless_file_are_judged_by_content_alone(self) -> None:
        assert _inspect(png(), None, None).detected is DetectedType.PNG
        assert _inspect(png(), "application/octet-stream", "scan").detected is DetectedType.PNG


@pytest.mark.spec("KYC-2")
class TestRefused:
    def test_other_content_is_an_unsupported_type_whatever_its_name(self) -> None:
        with pytest.raises(UnsupportedFileType) as caught:
            _inspect(b"GIF89a" + bytes(100), "image/png", "id.png")
        assert caught.value.reason is Refusal.UNSUPPORTED_TYPE
        with pytest.raises(UnsupportedFileType):
            _inspect(b"<html><script>alert(1)</script></html>", "application/pdf", "x.pdf")

    def test_a_declared_type_other_than_the_content_is_refused(self) -> None:
        with pytest.raises(FileTypeMismatch) as caught:
            _inspect(png(), "image/jpeg", "id.png")
        assert caught.value.reason is Refusal.DECLARED_TYPE_MISMATCH

    def test_a_name_whose_extension_is_not_the_content_is_refused(self) -> None:
        with pytest.raises(FileTypeMismatch) as caught:
            _inspect(pdf(), "application/pdf", "statement.html")
        assert caught.value.reason is Refusal.EXTENSION_MISMATCH

    def test_a_file_over_the_byte_limit_is_refused(self) -> None:
        with pytest.raises(FileTooLarge):
            inspect_document(
                jpeg(),
                declared_type=None,
                filename=None,
                limits=DocumentLimits(1000, LIMITS.max_pixels, 10, LIMITS.max_inflated_bytes),
            )

    def test_a_png_declaring_ten_billion_pixels_is_refused_before_decoding(self) -> None:
        bomb = png_bomb()
        assert len(bomb) < 2000
        with pytest.raises(ImageTooLarge) as caught:
            _inspect(bomb, "image/png", "id.png")
        assert caught.value.reason is Refusal.IMAGE_TOO_LARGE

    def test_an_image_over_the_configured_pixels_is_refused(self) -> None:
        limits = DocumentLimits(LIMITS.max_bytes, 100_000, 10, LIMITS.max_inflated_bytes)
        with pytest.raises(ImageTooLarge):
            inspect_document(png(400, 400), declared_type=None, filename=None, limits=limits)

    def test_a_truncated_image_is_unreadable(self) -> None:
        with pytest.raises(UnreadableDocument):
            _inspect(jpeg()[:300], "image/jpeg", "id.jpg")

    def test_a_pdf_with_too_many_pages_is_refused(self) -> None:
        with pytest.raises(TooManyPages) as caught:
            _inspect(pdf(11), "application/pdf", "bill.pdf")
        assert caught.value.extensions["pages"] == 11

    def test_a_pdf_with_javascript_is_refused(self) -> None:
        with pytest.raises(UnsafeDocument) as caught:
            _inspect(pdf_with_javascript(), "application/pdf", "bill.pdf")
        assert caught.value.reason is Refusal.PDF_JAVASCRIPT

    def test_a_pdf_with_a_launch_action_is_refused(self) -> None:
        with pytest.raises(UnsafeDocument) as caught:
            _inspect(pdf_with_action("/Launch"), "application/pdf", "bill.pdf")
        assert caught.value.reason is Refusal.PDF_LAUNCH_ACTION

    def test_a_pdf_with_an_embedded_file_is_refused(self) -> None:
        with pytest.raises(UnsafeDocument) as caught:
            _inspect(pdf_with_attachment(), "application/pdf", "bill.pdf")
        assert caught.value.reason is Refusal.PDF_EMBEDDED_FILE

    def test_an_encrypted_pdf_is_refused(self) -> None:
        with pytest.raises(UnsafeDocument) as caught:
            _inspect(encrypted_pdf(), "application/pdf", "bill.pdf")
        assert caught.value.reason is Refusal.PDF_ENCRYPTED

    def test_a_pdf_flate_bomb_is_refused(self) -> None:
        bomb = pdf_flate_bomb()
        assert len(bomb) < 1024 * 1024
        with pytest.raises(CompressedContentTooLarge) as caught:
            _inspect(bomb, "application/pdf", "bill.pdf")
        assert caught.value.reason is Refusal.COMPRESSED_TOO_LARGE

    def test_a_broken_pdf_is_unreadable(self) -> None:
        with pytest.raises(UnreadableDocument):
            _inspect(b"%PDF-1.7\n" + bytes(200), "application/pdf", "bill.pdf")
