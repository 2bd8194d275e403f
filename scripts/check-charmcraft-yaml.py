"""Validates charmcraft.yaml with charmcraft's own project model and part plugins.

`charmcraft pack` cannot run on this project's Debian CI, so the recipe a real Ubuntu build
uses is at least loaded here exactly as charmcraft loads it (with metadata.yaml, config.yaml
and actions.yaml merged in), every part checked against its plugin's schema.

Run with the interpreter of the venv that has charmcraft (requirements-charmcraft.txt).
"""

import pathlib
import sys

import yaml
from charmcraft import parts, preprocess
from charmcraft.models.project import CharmcraftProject

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".")
parts.setup_parts()
data = yaml.safe_load((root / "charmcraft.yaml").read_text())
for forbidden in ("name", "summary", "description"):
    if forbidden in data:
        sys.exit(
            f"charmcraft.yaml: remove {forbidden!r}; it belongs in metadata.yaml "
            "(ops.testing ignores the separate YAML files when charmcraft.yaml has it)"
        )
preprocess.add_default_parts(data)
for merge in (preprocess.add_metadata, preprocess.add_config, preprocess.add_actions):
    merge(root, data)
project = CharmcraftProject.unmarshal(data)
for part in data["parts"].values():
    parts.process_part_config(dict(part))
print(
    f"charmcraft.yaml: valid {type(project).__name__} {project.name!r}, "
    f"platforms {', '.join(project.platforms)}, parts {', '.join(sorted(project.parts))}"
)
