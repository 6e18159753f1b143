"""Every code block of README.md and docs/*.md runs as written.

Per page, in a fresh folder holding what the examples name (``elephant.jpg``, ``cat.jpg``, a
class-folder tree ``photos/{cat,dog}/``, ``calib/``, ``holdout/`` and an ImageNet-style ``val/``),
the page's blocks run in order: python blocks share one namespace (so a name must be defined by
the page itself), and each line of a bash block is a ``keras-xception ...`` command that must
exit 0. A block that cannot run here (it installs packages, downloads weights, needs ImageNet) is
marked by the line before it: ``<!-- not run: why -->``. No weights are downloaded: the Keras
cache is a fresh folder (and the machine is offline), so an example that would download fails.

The commands run in this process through ``keras_xception.cli.main`` (what ``python -m
keras_xception`` and the ``keras-xception`` script call): a subprocess per command would import
TensorFlow again each time (5-7 s of CPU each on 2 cores, measured), and the subprocess manners
of the command line (stderr, exit status, start-up noise) are tested in test_cli.py.
"""

import glob
import os
import re
import shlex

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = ["README.md"] + sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))
# Pages whose blocks train or quantize (about 15-30 s of CPU each on 2 cores): slow, still run in CI.
SLOW_PAGES = {"docs/training.md", "docs/deployment.md"}
FENCE = re.compile(r"^```(\S*)\s*$")
NOT_RUN = re.compile(r"^<!-- not run: (\S.*) -->$")


def code_blocks(page):
    """``(language, code, line number, reason not run or None)`` for each fenced block of ``page``."""
    with open(os.path.join(ROOT, page)) as f:
        lines = f.read().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        start = FENCE.match(lines[i])
        if not start:
            i += 1
            continue
        before = next((line.strip() for line in reversed(lines[:i]) if line.strip()), "")
        marked = NOT_RUN.match(before)
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        blocks.append((start.group(1), "\n".join(lines[i + 1 : end]), i + 1, marked and marked.group(1)))
        i = end + 1
    return blocks


def commands(code):
    """The commands of a bash block: continuation lines joined, comments and blank lines dropped."""
    text = code.replace("\\\n", " ")
    return [line for line in (re.sub(r"(^|\s)#.*$", "", raw).strip() for raw in text.splitlines()) if line]


def write_image(path, size, seed):
    """A smooth random RGB image (JPEG or PNG by the extension)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    h, w = size
    base = rng.uniform(0, 255, (4, 4, 3)).astype("uint8")
    image = Image.fromarray(base).resize((w, h), Image.BILINEAR)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    image.convert("RGB").save(path)


def prepare(folder):
    """The files the pages' examples name."""
    write_image(os.path.join(folder, "elephant.jpg"), (90, 120), 0)
    write_image(os.path.join(folder, "cat.jpg"), (100, 80), 1)
    for c, name in enumerate(("cat", "dog")):
        for k in range(4):
            write_image(os.path.join(folder, "photos", name, f"{k}.jpg"), (80 + 8 * k, 96), 10 * c + k)
    for k in range(3):
        write_image(os.path.join(folder, "calib", f"{k}.jpg"), (90, 90), 100 + k)
        write_image(os.path.join(folder, "holdout", f"{k}.jpg"), (90, 90), 200 + k)
    for c, wnid in enumerate(("n01440764", "n01443537")):
        write_image(os.path.join(folder, "val", wnid, f"ILSVRC2012_val_{c + 1:08d}.JPEG"), (96, 96), 300 + c)


def test_pages_found():
    assert "README.md" in PAGES and len(PAGES) >= 7, PAGES


def test_readme_is_a_front_door_with_the_ci_test_command():
    """At most 300 lines, and .ci/run runs exactly the README's test command."""
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    with open(os.path.join(ROOT, ".ci", "run")) as f:
        ci = f.read().splitlines()
    command = ci[ci.index("# The README's test command:") + 1].strip()
    assert command == "python -m pytest -q"
    assert f'pip install -e ".[test]" && {command}' in readme
    assert len(readme.splitlines()) <= 300


@pytest.mark.parametrize("page", PAGES)
def test_links_between_pages_resolve(page):
    with open(os.path.join(ROOT, page)) as f:
        text = f.read()
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
        assert os.path.exists(os.path.join(ROOT, os.path.dirname(page), target)), f"{page}: {target}"


@pytest.mark.parametrize("page", PAGES)
def test_every_block_is_python_or_bash_or_marked(page):
    for language, code, line, reason in code_blocks(page):
        assert reason or language in ("python", "bash"), f"{page}:{line}: a {language or 'plain'} block: mark it"
        if language == "bash" and not reason:
            for command in commands(code):
                assert command.startswith("keras-xception "), f"{page}:{line}: {command!r} is not run: mark the block"


@pytest.mark.parametrize("page", [pytest.param(p, marks=pytest.mark.slow) if p in SLOW_PAGES else p for p in PAGES])
def test_page_runs(page, tmp_path, monkeypatch, capsys):
    blocks = [b for b in code_blocks(page) if not b[3]]
    if not blocks:
        pytest.skip("no block to run")
    prepare(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))  # nothing cached: no weights to be had
    from keras_xception import cli

    namespace = {"__name__": "__docs__"}
    for language, code, line, _ in blocks:
        if language == "python":
            exec(compile(code, f"{page}:{line}", "exec"), namespace)
        else:
            for command in commands(code):
                status = cli.main(shlex.split(command)[1:])
                out, err = capsys.readouterr()
                assert status == 0, f"{page}:{line}: {command}\n{out}\n{err}"
