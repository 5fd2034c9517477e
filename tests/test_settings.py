"""Settings: typed, defaulted, and a bad value names its key."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from lienwatch.settings import Settings, SettingsError, load_settings, settings_reference


class TestLoadSettings:
    def test_missing_default_file_gives_defaults(self, tmp_path, monkeypatch):
        """With no lienwatch.toml the documented defaults apply."""
        monkeypatch.chdir(tmp_path)
        assert load_settings() == Settings()

    def test_values_are_typed(self, tmp_path):
        """A file's values arrive as their types (Decimal money, Path paths)."""
        path = tmp_path / "lw.toml"
        path.write_text('[delinquency]\nshortfall_tolerance = "5.00"\n[paths]\ndb = "x/y.duckdb"\n')
        settings = load_settings(path)
        assert settings.delinquency.shortfall_tolerance == Decimal("5.00")
        assert settings.paths.db == Path("x/y.duckdb")

    @pytest.mark.parametrize(
        ("text", "key"),
        [
            ('[delinquency]\nshortfall_tolerance = "-1"\n', "delinquency.shortfall_tolerance"),
            ('[delinquency]\nshortfall_tolerance = "lots"\n', "delinquency.shortfall_tolerance"),
            ("[servicer]\nmailing_address = []\n", "servicer.mailing_address"),
            ("[servicer]\nphone_number = 1\n", "servicer.phone_number"),
            ("[nonsense]\na = 1\n", "nonsense"),
        ],
    )
    def test_bad_value_names_the_key(self, tmp_path, text, key):
        """A wrong type, a bad range or an unknown key stops with the file and the key."""
        path = tmp_path / "lw.toml"
        path.write_text(text)
        with pytest.raises(SettingsError) as caught:
            load_settings(path)
        assert str(caught.value).startswith(f"{path}: {key}: ")

    def test_not_toml(self, tmp_path):
        """A file that is not TOML is refused with its name."""
        path = tmp_path / "lw.toml"
        path.write_text("this is = = not toml")
        with pytest.raises(SettingsError, match="not valid TOML"):
            load_settings(path)

    def test_reference_doc_is_current(self):
        """docs/configuration.md is exactly what the settings code generates."""
        doc = Path(__file__).parents[1] / "docs" / "configuration.md"
        assert doc.read_text() == settings_reference() + "\n"
