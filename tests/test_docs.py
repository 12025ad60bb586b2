"""Every file path the repository's Markdown names exists, so a newcomer following the docs finds each file.

Checked: the targets of `[text](path)` links and backticked tokens that look like repo paths (a `/`
after a top-level folder of the repo, or a name ending in one of `SUFFIXES`), `#anchors` stripped,
resolved against the repository root or the Markdown file's folder. Fenced code blocks are commands,
not references, and are not read. Skipped, explicitly:
- URLs and placeholders: `://`, `mailto:`, `<...>`, `path/to/...`, shell globs (`*`);
- run outputs: paths under `runs/` or a SavedModel's `assets.extra/`, and bare data-file names
  (no `/`, not `.py`/`.md`: `examples.csv`, `evaluation.json`, written under `--output_dir`).
Two readings widen the lookup: a bare `.py`/`.md` name may sit anywhere in the repo (a module named
in its package's row, as `splits.py` in `components/train/`), and `pkg/module.attr` names an
attribute, so its `pkg/module.py` must exist.
"""

import re
import subprocess
from pathlib import Path

import pytest

from components import configs

ROOT = configs.REPO_ROOT
SUFFIXES = (".py", ".md", ".csv", ".json", ".txt", ".png")
SKIP_MARKERS = ("://", "mailto:", "<", ">", "path/to/", "*")
RUN_OUTPUTS = ("runs/", "assets.extra/")
TOP_LEVEL = {path.name for path in ROOT.iterdir() if not path.name.startswith(".")}

FENCED_BLOCK = re.compile(r"^ *```.*?^ *```", re.S | re.M)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
CODE = re.compile(r"`([^`\n]+)`")
ATTRIBUTE = re.compile(r"(.+/\w+)\.\w+$")  # pkg/module.attr


def markdown_files() -> list[Path]:
    """The repository's Markdown files, tracked or new (git's ignore rules leave out run outputs)."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.md"],
                            cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    return sorted(ROOT / name for name in listed if (ROOT / name).is_file())


def named_paths(text: str) -> list[str]:
    """Link targets and path-like backticked tokens, outside fenced code blocks."""
    text = FENCED_BLOCK.sub("", text)
    named = LINK.findall(text)
    for token in CODE.findall(text):
        looks_like_path = "/" in token and token.split("/")[0] in TOP_LEVEL or token.endswith(SUFFIXES)
        if " " not in token and token not in SUFFIXES and looks_like_path:
            named.append(token)
    return named


def _skipped(path: str) -> bool:
    bare_data_file = "/" not in path and not path.endswith((".py", ".md"))
    return any(marker in path for marker in SKIP_MARKERS) or path.startswith(RUN_OUTPUTS) or bare_data_file


def _exists(path: str, folder: Path) -> bool:
    if (ROOT / path).exists() or (folder / path).exists():
        return True
    if "/" not in path:
        return any(ROOT.rglob(path))
    attribute = ATTRIBUTE.fullmatch(path)
    return bool(attribute) and not path.endswith(SUFFIXES) and (ROOT / f"{attribute.group(1)}.py").is_file()


def missing_paths(text: str, folder: Path) -> list[str]:
    """The paths `text` (Markdown in `folder`) names that do not exist."""
    paths = [name.split("#")[0] for name in named_paths(text)]
    return [path for path in paths if path and not _skipped(path) and not _exists(path, folder)]


@pytest.mark.parametrize("markdown", markdown_files(), ids=lambda path: str(path.relative_to(ROOT)))
def test_every_path_the_markdown_names_exists(markdown):
    assert missing_paths(markdown.read_text(), markdown.parent) == []


def test_a_broken_link_or_path_is_caught():
    text = """
See [the build](BUILD.md), [the protocol](docs/protocol.md#splits), [nowhere](docs/no_such_page.md)
and [a section](#results). Code: `common/files.py`, `components/no_such_stage.py`, `no_such_module.py`,
`serving/push.SERVING_IMAGE`, `serving/nothing.ATTRIBUTE`, `.md`.
Not paths: [a site](https://example.org/x.md), `<serving_dir>/<model_name>/`, `path/to/xrays`,
`runs/train/work`, `assets.extra/model_card.md`, `provenance_*.json`, `evaluation.json`.

```bash
python -m pipeline.score --images=fenced/away.png
```
"""
    assert missing_paths(text, ROOT / "docs") == [
        "docs/no_such_page.md", "components/no_such_stage.py", "no_such_module.py", "serving/nothing.ATTRIBUTE"]
