"""A real file storage that refuses to save one investor's statements: fault injection for
the retry-and-report path (everything else about storage runs for real)."""

from __future__ import annotations

from typing import Any

from django.core.files.storage import FileSystemStorage


class RefusingStorage(FileSystemStorage):
    refused_investor_id: int | None = None
    attempts = 0

    def _save(self, name: str, content: Any) -> str:
        if f"investor-{self.refused_investor_id}-" in name:
            RefusingStorage.attempts += 1
            raise OSError("storage unavailable (injected)")
        return super()._save(name, content)  # type: ignore[misc]  # untyped in the stubs
