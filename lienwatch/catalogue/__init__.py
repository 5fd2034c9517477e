"""The hardship options catalogue: the bundled ``hardship_options.toml`` or a servicer's own."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

from lienwatch.errors import LienwatchError
from transforms import options

BUNDLED_CATALOGUE = "hardship_options.toml"


def load_catalogue(path: Path | None) -> options.Catalogue:
    """The options catalogue at ``path`` (or the bundled one), validated."""
    if path is None:
        text = resources.files(__package__).joinpath(BUNDLED_CATALOGUE).read_text(encoding="utf-8")
        source = f"lienwatch/catalogue/{BUNDLED_CATALOGUE}"
    else:
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise LienwatchError(f"{path}: hardship options catalogue not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise LienwatchError(
                f"{path}: cannot read the hardship options catalogue ({exc})"
            ) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LienwatchError(f"{source}: not valid TOML ({exc})") from None
    try:
        return options.parse_catalogue(raw, source)
    except options.CatalogueError as exc:
        raise LienwatchError(str(exc)) from None
