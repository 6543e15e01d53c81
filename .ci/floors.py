"""Print pip constraints pinning every dependency (and the test extra) to its declared floor.

    python .ci/floors.py > floors.txt && pip install -c floors.txt -e ".[test]"

installs exactly the oldest versions pyproject.toml claims to support, so .ci/matrix can test
them. A requirement without a `>=` floor is left to pip. `--only numpy` limits the output.
"""

import argparse
import pathlib
import re

import tomllib

REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*([^;]*)(;.*)?$")


def floors(pyproject):
    project = tomllib.loads(pathlib.Path(pyproject).read_text(encoding="utf-8"))["project"]
    requirements = project.get("dependencies", []) + project.get("optional-dependencies", {}).get("test", [])
    for requirement in requirements:
        name, spec, marker = REQUIREMENT.match(requirement).groups()
        floor = re.search(r">=\s*([0-9][^,\s]*)", spec)
        if floor:
            yield f"{name}=={floor.group(1)}{marker or ''}"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pyproject", default=pathlib.Path(__file__).resolve().parents[1] / "pyproject.toml")
    parser.add_argument("--only", nargs="*", help="only these distributions")
    args = parser.parse_args()
    for line in floors(args.pyproject):
        if not args.only or line.split("==")[0].lower() in {n.lower() for n in args.only}:
            print(line)
