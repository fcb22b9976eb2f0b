"""The README tells the truth: its example catalogue validates and its commands exist."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from forecast.catalogue import parse_catalogue
from forecast.cli import build_parser

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def test_readme_minimal_catalogue_is_valid() -> None:
    block = re.search(r"```yaml\n(.*?)```", README, re.S)
    assert block, "README lost its catalogue example"
    cat = parse_catalogue(yaml.safe_load(block.group(1)), file="README.md")
    assert cat.rivers[0].thresholds.ladder()[-1] == ("danger_m", 5.5)


def test_readme_commands_exist() -> None:
    commands = set(re.findall(r"^\| `forecast ([a-z-]+)", README, re.M))
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert commands and commands <= set(sub.choices), commands - set(sub.choices)  # type: ignore[arg-type]
    assert "make demo" in README and "make test" in README


def test_readme_module_table_names_real_modules() -> None:
    root = Path(__file__).resolve().parent.parent
    paths = re.findall(r"^\| `(forecast/[a-z_/]+(?:\.py)?)` \|", README, re.M)
    assert len(paths) >= 10
    missing = [p for p in paths if not (root / p).exists()]
    assert not missing, missing
    # every package and top-level module of forecast/ is in the table
    tops = {p.name for p in (root / "forecast").iterdir()
            if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").exists()}
    named = {Path(p).name for p in paths}
    assert tops - {"logs.py"} <= named, tops - named
