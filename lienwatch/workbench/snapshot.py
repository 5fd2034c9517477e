"""Where the workbench finds the snapshot the last completed night published
(:mod:`lienwatch.workbench.publish` writes them)."""

from __future__ import annotations

from pathlib import Path

from lienwatch.settings import Settings

POINTER = "CURRENT"


def snapshot_dir(settings: Settings, db: Path) -> Path:
    """``workbench.snapshots``, else the folder ``workbench/`` beside the warehouse."""
    return settings.workbench.snapshots or db.parent / "workbench"


def current(folder: Path) -> Path | None:
    """The snapshot the last completed night published, or None before the first."""
    try:
        name = (folder / POINTER).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    path = folder / name
    return path if path.exists() else None
