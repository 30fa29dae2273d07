"""WeasyPrint never fetches anything but the project's own static files: the URL fetcher is
asked for every resource a document names and refuses the rest, so their content never
reaches the PDF (and an HTTP server never sees a request)."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from reports.pdf import html_to_pdf
from tests.reports.conftest import pdf_text

pytestmark = [pytest.mark.embedded]

MARKER_CSS = 'body::after {{ content: "{marker}"; }}'


@pytest.fixture
def http_server():
    """A real HTTP server on localhost that serves a stylesheet adding a marker to the page
    and counts every request it gets."""
    requests: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            body = MARKER_CSS.format(marker="FETCHED-OVER-HTTP").encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/css")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", requests
    server.shutdown()
    server.server_close()


def test_file_etc_passwd_and_http_image_fetch_nothing(http_server):
    base, requests = http_server
    html = f"""
        <p>Statement body</p>
        <img src="file:///etc/passwd">
        <img src="{base}/pixel.png">
        <link rel="stylesheet" href="file:///etc/passwd">
        <link rel="stylesheet" href="{base}/style.css">
        <div style="background: url('{base}/background.png')">x</div>
    """
    rendered = html_to_pdf(html)
    # every outside URL was asked for and refused; nothing was fetched
    assert "file:///etc/passwd" in rendered.refused_urls
    assert f"{base}/pixel.png" in rendered.refused_urls
    assert f"{base}/style.css" in rendered.refused_urls
    assert rendered.fetched_urls == ()
    # the HTTP server never saw a request, and the PDF holds none of either resource
    assert requests == []
    text = pdf_text(rendered.content)
    assert "Statement body" in text
    assert "FETCHED-OVER-HTTP" not in text
    assert "root:" not in text


def test_the_fetcher_would_show_a_fetched_stylesheet(tmp_path, settings):
    """Control: the same stylesheet inside STATIC_ROOT is fetched and its marker shows, so
    the absence of the marker above is the fetcher's doing."""
    settings.STATIC_ROOT = tmp_path / "static"
    settings.STATIC_ROOT.mkdir()
    stylesheet = settings.STATIC_ROOT / "ok.css"
    stylesheet.write_text(MARKER_CSS.format(marker="FROM-STATIC-ROOT"))
    rendered = html_to_pdf(f'<link rel="stylesheet" href="{stylesheet.as_uri()}"><p>x</p>')
    assert rendered.fetched_urls == (stylesheet.as_uri(),)
    assert "FROM-STATIC-ROOT" in pdf_text(rendered.content)


def test_files_outside_the_static_folders_are_refused_even_through_tricks(tmp_path, settings):
    secret = tmp_path / "outside" / "secret.css"
    secret.parent.mkdir()
    secret.write_text(MARKER_CSS.format(marker="SECRET-CONTENT"))
    settings.STATIC_ROOT = tmp_path / "static"
    settings.STATIC_ROOT.mkdir()
    (settings.STATIC_ROOT / "link.css").symlink_to(secret)  # a symlink out of the root
    escape = settings.STATIC_ROOT.as_uri() + "/../outside/secret.css"  # climbing out with ..
    urls = [
        secret.as_uri(),
        (settings.STATIC_ROOT / "link.css").as_uri(),
        escape,
        "data:text/css;base64,Ym9keTo6YWZ0ZXJ7Y29udGVudDoiREFUQS1VUkwifQ==",
        "ftp://127.0.0.1/secret.css",
        "file://evil.example/etc/passwd",
    ]
    html = "".join(f'<link rel="stylesheet" href="{url}">' for url in urls) + "<p>body</p>"
    rendered = html_to_pdf(html)
    assert rendered.fetched_urls == ()
    assert len(rendered.refused_urls) == len(urls)
    text = pdf_text(rendered.content)
    assert "SECRET-CONTENT" not in text
    assert "DATA-URL" not in text


def test_refusals_are_logged(caplog):
    with caplog.at_level("WARNING", logger="reports.pdf"):
        html_to_pdf('<img src="file:///etc/passwd">')
    assert "refused to fetch file:///etc/passwd" in caplog.text


def test_relative_urls_resolve_to_the_reports_static_folder():
    # (a stylesheet: images fetched once are kept in the process's cache, stylesheets not)
    rendered = html_to_pdf('<link rel="stylesheet" href="reports/statement.css"><p>x</p>')
    assert len(rendered.fetched_urls) == 1
    assert rendered.fetched_urls[0].endswith("/reports/static/reports/statement.css")
    assert rendered.refused_urls == ()
