"""``python -m mrcnn_lite.config --table [--write README.md]``: print the preset table, or paste it into the
README between its markers; ``--dump NAME``: a preset's resolved config as JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mrcnn_lite.config import get_preset, to_dict
from mrcnn_lite.config.table import presets_table, replace_readme_section


def main(argv: list[str] | None = None) -> None:
    """Parse ``argv`` and print or write what it asks for."""
    parser = argparse.ArgumentParser(prog="python -m mrcnn_lite.config", description=__doc__)
    parser.add_argument("--table", action="store_true", help="print the README's preset table")
    parser.add_argument("--write", metavar="README", help="with --table: paste it into this file")
    parser.add_argument("--dump", metavar="NAME", help="print preset NAME's resolved config as JSON")
    args = parser.parse_args(argv)
    if args.dump:
        print(json.dumps(to_dict(get_preset(args.dump)), indent=2))
    if args.table:
        table = presets_table()
        if args.write:
            path = Path(args.write)
            path.write_text(replace_readme_section(path.read_text(), table))
            print(f"wrote the preset table into {path}")
        else:
            print(table, end="")
    if not (args.table or args.dump):
        parser.print_help()


if __name__ == "__main__":
    main()
