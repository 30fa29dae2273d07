"""A text progress bar for management commands."""

from __future__ import annotations

BAR_WIDTH = 30


def progress_bar(*, done: int, failed: int, total: int) -> str:
    """'[#######.......] 4/8 (1 failed)': finished (done or failed) of total."""
    finished = done + failed
    filled = BAR_WIDTH * finished // total if total else BAR_WIDTH
    return f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {finished}/{total} ({failed} failed)"
