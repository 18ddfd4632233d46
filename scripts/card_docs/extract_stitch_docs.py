"""Write scripts/card_docs/stitch_docs.json: each source type's Stitch setup guide, read from a
checkout of github.com/stitchdata/docs (the repository the shared catalog facts come from).

    python scripts/card_docs/extract_stitch_docs.py PATH_TO_STITCHDATA_DOCS_GIT_DIR

Each integration page's front matter names its type (``api-type``; a webhook page only its ``name``,
so ``webhook.<name>``) and its ``permalink``; the site serves it under https://www.stitchdata.com/docs.
A type with several pages takes its newest ``this-version``; when the pages are for different
products (Amazon RDS, Aurora and plain PostgreSQL all say ``platform.postgres``), the plain one
(``vanilla/`` or the page named like the type) wins, and a type with no such page gets no link
rather than a guess.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "stitch_docs.json"
SITE = "https://www.stitchdata.com/docs"
PAGES = re.compile(r"_(saas|database|webhook)-integrations/.*\.md$")
FRONT_MATTER = re.compile(r"---\n(.*?)\n---\n", re.S)
VERSION_SUFFIX = re.compile(r"/v[0-9-]+$")


def _git(repo: str, *args: str) -> str:
    return subprocess.run(["git", "--git-dir", repo, *args], capture_output=True, text=True, check=True).stdout


def _field(front_matter: str, key: str) -> str | None:
    match = re.search(rf'^{key}:\s*"?([^"\n]*?)"?\s*$', front_matter, re.M)
    return match.group(1).strip() if match else None


def _version(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return 0.0


def pages(repo: str) -> dict[str, list[tuple[str, str, str]]]:
    found: dict[str, list[tuple[str, str, str]]] = {}
    for path in _git(repo, "ls-tree", "-r", "--name-only", "HEAD").splitlines():
        if not PAGES.match(path):
            continue
        match = FRONT_MATTER.match(_git(repo, "show", f"HEAD:{path}"))
        if not match:
            continue
        front = match.group(1)
        source_type, permalink = _field(front, "api-type"), _field(front, "permalink")
        if path.startswith("_webhook-integrations/") and not source_type and _field(front, "name"):
            source_type = f"webhook.{_field(front, 'name')}"
        if source_type and permalink:
            found.setdefault(source_type, []).append((_field(front, "this-version") or "0", permalink, path))
    return found


def choose(source_type: str, candidates: list[tuple[str, str, str]]) -> str | None:
    stem = source_type.split(".", 1)[-1].replace("hp-", "")
    if len({VERSION_SUFFIX.sub("", p) for _, p, _ in candidates}) > 1:
        plain = [c for c in candidates
                 if "/vanilla/" in c[2] or VERSION_SUFFIX.sub("", c[1]).rsplit("/", 1)[-1] == stem]
        if not plain or len({VERSION_SUFFIX.sub("", p) for _, p, _ in plain}) > 1:
            return None
        candidates = plain
    return SITE + max(candidates, key=lambda c: (_version(c[0]), c[1]))[1]


def main(repo: str) -> int:
    commit = _git(repo, "rev-parse", "HEAD").strip()
    links = {t: url for t, found in sorted(pages(repo).items()) if (url := choose(t, found))}
    about = (f"Stitch's setup guide per source type, from github.com/stitchdata/docs at {commit} "
             "(front matter api-type and permalink), written by scripts/card_docs/extract_stitch_docs.py. "
             "types.json's docs_url wins where it names one.")
    OUT.write_text(json.dumps({"_about": about, **links}, indent=1, sort_keys=False) + "\n")
    print(f"{len(links)} types → {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
