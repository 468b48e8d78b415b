"""What an input is by its first bytes, for the formats Pillow cannot identify; optional plugins.

:func:`sniff` names the content (an image format, or SVG, HTML, XML, PDF, text) so that an error
can say what a file really is and what to do; :func:`open_image` opens bytes with Pillow and, for
HEIC, with the maintained pillow-heif plugin when it is installed.
"""

from __future__ import annotations

import io

from PIL import Image, UnidentifiedImageError

__all__ = ["IMAGE_KINDS", "open_image", "sniff", "unidentified"]

_MAGIC = (
    (b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"GIF8", "GIF"), (b"BM", "BMP"),
    (b"II*\0", "TIFF"), (b"MM\0*", "TIFF"), (b"%PDF-", "PDF"),
)
IMAGE_KINDS = frozenset({"JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP", "AVIF", "HEIC"})
_HEIC_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1")


def sniff(data: bytes) -> str | None:
    """The kind of content by its first bytes: an image format, or SVG, HTML, XML, PDF, text."""
    head = data[:1024]
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[4:8] == b"ftyp":  # ISO base media: the major brand, then the compatible ones
        brands = head[8 : max(16, min(len(head), int.from_bytes(head[:4], "big")))]
        if b"avif" in brands or b"avis" in brands:
            return "AVIF"
        if any(brand in brands for brand in _HEIC_BRANDS):
            return "HEIC"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if b"<svg" in text:
        return "SVG"
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or b"<html" in text:
        return "HTML"
    if text.startswith(b"<?xml"):
        return "XML"
    try:
        decoded = head.decode("utf-8")
    except UnicodeDecodeError as exc:  # a multi-byte character cut at the end is still text
        decoded = head[: exc.start].decode("utf-8") if exc.start > len(head) - 4 else ""
    if decoded and sum(c.isprintable() or c in "\t\r\n" for c in decoded) >= 0.95 * len(decoded):
        return "text"
    return None


def unidentified(desc: str, content: bytes, hint: str) -> str:
    """Why Pillow could not identify ``content``, and what to do about it."""
    kind = sniff(content)
    if kind == "SVG":
        return (f"{desc} is an SVG drawing (vector graphics), not a raster image the model can read. "
                "Render it to PNG first (e.g. with cairosvg, or export from the editor).")
    if kind == "HTML":
        return f"{desc} is an HTML web page, not an image.{hint} Pass the address or file of the image itself."
    if kind == "PDF":
        return (f"{desc} is a PDF, not an image. Use df.caprl.extract, which reads PDFs page by page, "
                "or caprl_nb.extract.expand_pdfs([...]).values for one image per page.")
    if kind == "HEIC":
        return (f"unsupported format: HEIC; {desc} is a HEIC/HEIF photo, which Pillow cannot read on its own. "
                "Convert it to JPEG, or `pip install pillow-heif` (caprl_nb uses it once installed).")
    if kind == "AVIF":
        return (f"unsupported format: AVIF; this Pillow build cannot read {desc}. Upgrade Pillow "
                "(11.2 and later read AVIF when built with libavif, as its wheels are), or convert it to JPEG or PNG.")
    if kind in ("text", "XML"):
        start = content[:24].decode("utf-8", "replace")
        named = " Its name may say .jpg while its content is not; check the file." if desc.startswith("file ") else ""
        return f"{desc} is not an image: it holds {kind} (it starts with {start!r}).{hint}{named}"
    if kind in IMAGE_KINDS:
        return (f"{desc} starts like a {kind} file, but Pillow cannot read it: it may be truncated or corrupt.{hint} "
                "Re-save or re-download it.")
    return (f"{desc} is not an image Pillow can read (it starts with {content[:8]!r}).{hint} "
            "Check that it is a JPEG, PNG, WebP, GIF, BMP, TIFF or AVIF file.")


def open_image(content: bytes) -> Image.Image:
    """``Image.open`` over bytes; HEIC through pillow-heif when it is installed."""
    try:
        return Image.open(io.BytesIO(content))
    except UnidentifiedImageError:
        if sniff(content) != "HEIC" or not _register_heif():
            raise
        return Image.open(io.BytesIO(content))


def _register_heif() -> bool:
    """Register pillow-heif's opener with Pillow, if that maintained plugin is installed."""
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        return False
    register_heif_opener()
    return True
