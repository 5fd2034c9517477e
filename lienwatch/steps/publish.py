"""After a completed night: the workbench is pointed at the night's snapshot (built by the
review step), in one atomic rename."""

from __future__ import annotations

from lienwatch.night import Night
from lienwatch.settings import Settings
from lienwatch.workbench import publish


def run(night: Night, settings: Settings) -> str | None:
    published = publish.switch(night, settings)
    return None if published is None else str(published)
