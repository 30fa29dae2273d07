"""HTML → PDF with WeasyPrint, kept warm in the process and never fetching outside our files.

Warm: importing WeasyPrint (~0.5 s), building its font configuration and parsing the
stylesheet happen once per process (`pdf_warm_up`, run when a Celery worker process starts,
or lazily on the first render); each statement then only lays out and writes. The stylesheet
uses one font family in two faces (regular, bold): subsetting fonts is most of a render's
time, and every extra face costs.

Locked down: a statement is built from investor data, so its HTML must never make the
renderer read a file or reach a host it was not meant to (`file:///etc/passwd`, an `http://`
tracking pixel, an internal metadata URL). `StaticFilesOnlyFetcher` serves only files under
the project's own static folders (`reports/static` and `STATIC_ROOT`), resolved with symlinks
and `..` removed; every other URL — any other path, `http(s)`, `ftp`, `data:` (it can carry
SVG that fetches further) — fetches nothing, is logged, and is listed on the result.
"""

from __future__ import annotations

import logging
import mimetypes
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from django.conf import settings

logger = logging.getLogger(__name__)

REPORTS_STATIC_DIR = Path(__file__).resolve().parent / "static"
STYLESHEET_PATH = REPORTS_STATIC_DIR / "reports" / "statement.css"
# Relative URLs in templates ("reports/logo.svg") resolve against the reports static folder.
BASE_URL = REPORTS_STATIC_DIR.as_uri() + "/"


class FetchRefused(ValueError):
    """Raised to WeasyPrint for a URL outside the allowed folders; it skips the resource."""


def allowed_static_roots() -> tuple[Path, ...]:
    roots = [REPORTS_STATIC_DIR]
    static_root = getattr(settings, "STATIC_ROOT", None)
    if static_root:
        roots.append(Path(static_root).resolve())
    return tuple(roots)


def static_path_of(url: str, roots: tuple[Path, ...]) -> Path | None:
    """The file a `file:` URL names if it is inside one of `roots`, else None."""
    parts = urlsplit(url)
    if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
        return None
    path = Path(unquote(parts.path)).resolve()
    if any(path.is_relative_to(root) for root in roots) and path.is_file():
        return path
    return None


def _fetcher_class() -> type[Any]:
    from weasyprint.urls import URLFetcher, URLFetcherResponse

    class StaticFilesOnlyFetcher(URLFetcher):
        def __init__(self) -> None:
            super().__init__(allowed_protocols=("file",), allow_redirects=False)
            self.roots = allowed_static_roots()
            self.fetched: list[str] = []
            self.refused: list[str] = []

        def fetch(self, url: str, headers: Any = None) -> Any:
            path = static_path_of(url, self.roots)
            if path is None:
                self.refused.append(url)
                logger.warning("PDF rendering refused to fetch %s", url[:200])
                raise FetchRefused(f"not one of the project's static files: {url[:200]}")
            self.fetched.append(url)
            content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            return URLFetcherResponse(
                path.as_uri(), path.read_bytes(), headers={"Content-Type": content_type}
            )

    return StaticFilesOnlyFetcher


class _ImageCache(dict[str, Any]):
    """WeasyPrint's image cache, shared by every render of the process. It also remembers
    failures (as None), which would skip the fetcher — and its refusal log — for the next
    document naming the same URL: failures are not kept, so each document is checked."""

    def __setitem__(self, key: str, value: Any) -> None:
        if value is not None:
            super().__setitem__(key, value)


@dataclass(frozen=True)
class RenderedPdf:
    content: bytes
    page_count: int
    fetched_urls: tuple[str, ...]
    refused_urls: tuple[str, ...]


class _Warm:
    """What every render reuses: the font configuration, the parsed stylesheet and the
    image cache (our static images only, so sharing it between documents leaks nothing)."""

    def __init__(self) -> None:
        from weasyprint import CSS
        from weasyprint.text.fonts import FontConfiguration

        self.fetcher_class = _fetcher_class()
        self.font_config = FontConfiguration()
        self.stylesheet = CSS(
            filename=str(STYLESHEET_PATH),
            font_config=self.font_config,
            url_fetcher=self.fetcher_class(),
        )
        self.image_cache = _ImageCache()


_warm_lock = threading.Lock()
_warm_state: list[_Warm] = []


def _warm() -> _Warm:
    if not _warm_state:
        with _warm_lock:
            if not _warm_state:
                _warm_state.append(_Warm())
    return _warm_state[0]


def pdf_warm_up() -> None:
    """Import WeasyPrint and build fonts and stylesheet now (worker start), not mid-batch."""
    _warm()
    html_to_pdf("<p>warm-up</p>")


def html_to_pdf(html: str) -> RenderedPdf:
    from weasyprint import HTML

    warm = _warm()
    fetcher = warm.fetcher_class()
    document = HTML(string=html, base_url=BASE_URL, url_fetcher=fetcher).render(
        stylesheets=[warm.stylesheet], font_config=warm.font_config, cache=warm.image_cache
    )
    content = document.write_pdf()
    return RenderedPdf(
        content=content,
        page_count=len(document.pages),
        fetched_urls=tuple(fetcher.fetched),
        refused_urls=tuple(fetcher.refused),
    )
