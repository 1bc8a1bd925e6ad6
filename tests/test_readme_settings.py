"""The README lists every setting, so an operator never meets an undocumented variable."""
from pathlib import Path

from core.config import Settings


def test_every_setting_is_in_the_readme_settings_table():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    table = readme.split("## Settings", 1)[1]
    missing = [name.upper() for name in Settings.model_fields if f"| `{name.upper()}` |" not in table]
    assert not missing, f"document these settings in README.md: {missing}"
