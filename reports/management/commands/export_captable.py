"""`manage.py export_captable OFFERING [--as-of TS] --format csv|xlsx --output PATH`.

OFFERING is an id or a slug; `--as-of` takes the values the API's `as_of` takes (an instant,
a naive time in the offering's time zone, or a date meaning the end of that day there;
default now). The file is written next to PATH first and renamed into place, so a reader
never sees half a file. `--output -` writes CSV to standard output.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from captable.captable_api import as_of_parse, offering_find
from common.errors import DomainError
from reports.exports import captable_frame, frame_export


class Command(BaseCommand):
    help = "Export an offering's cap table as of an instant to CSV or XLSX (exact amounts)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("offering", help="Offering id or slug.")
        parser.add_argument("--as-of", dest="as_of", default=None)
        parser.add_argument("--format", choices=("csv", "xlsx"), required=True)
        parser.add_argument("--output", required=True, help="File path, or - for stdout (csv).")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            offering = offering_find(str(options["offering"]))
            moment = as_of_parse(options["as_of"], time_zone=offering.time_zone)
        except DomainError as error:
            raise CommandError(error.detail) from None
        frame = captable_frame(offering=offering, as_of=moment)
        content = frame_export(frame, options["format"])
        output = str(options["output"])
        if output == "-":
            if options["format"] != "csv":
                raise CommandError("Only CSV can be written to standard output.")
            self.stdout.write(content.decode("utf-8"), ending="")
            return
        write_atomically(Path(output), content)
        self.stderr.write(
            f"Wrote {len(frame)} holder{'s' if len(frame) != 1 else ''} as of "
            f"{moment.isoformat()} to {output}"
        )


def write_atomically(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(content)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
