"""Statement tests write their PDFs under a temporary MEDIA_ROOT, never into var/."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader


@pytest.fixture(autouse=True)
def media_root(tmp_path: Path, settings: Any) -> Path:
    root = tmp_path / "media"
    root.mkdir()
    settings.MEDIA_ROOT = root
    return root


def pdf_text(content: bytes) -> str:
    """The text a reader (or a screen reader, or a search) gets out of the PDF, with
    whitespace runs collapsed so table cells read as one line."""
    reader = PdfReader(io.BytesIO(content))
    return " ".join(" ".join((page.extract_text() or "").split()) for page in reader.pages)


def pdf_page_count(content: bytes) -> int:
    return len(PdfReader(io.BytesIO(content)).pages)
