"""Statement data → HTML (Django template of its kind) → PDF (`reports/pdf.py`)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from django.template.loader import render_to_string

from reports.formatting import Formatter
from reports.kinds import KindSpec
from reports.pdf import RenderedPdf, html_to_pdf


def statement_html(spec: KindSpec, data: Any) -> str:
    fmt = Formatter(locale=data.locale)
    context = {
        "lang": data.locale.split("_")[0],
        "platform": asdict(data.platform),
        "fingerprint": data.fingerprint.sha256,
        "posting_count": data.fingerprint.posting_count,
        **spec.context(data, fmt),
    }
    return render_to_string(spec.template, context)


def statement_pdf(spec: KindSpec, data: Any) -> RenderedPdf:
    return html_to_pdf(statement_html(spec, data))
