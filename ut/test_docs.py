"""The code in ``README.rst`` and ``docs/*.rst`` runs, so the examples cannot rot.

Every ``.. code-block:: python`` of a page is executed, in order, in one namespace
per page (later blocks may use what earlier ones defined), with ``__name__`` set to
``"__main__"`` as in a script. A block fails its page's test with a traceback that
points at the line of the ``.rst`` file. Markers:

* a line ``# py3 only`` in a block: the block is skipped on Python 2;
* an RST comment ``.. test-requires: module [module ...]`` right before a block: the
  block is skipped (visibly, in the test's output) when a module is missing; the
  pseudo-module ``python3`` is missing on Python 2, and ``run_as_a_script`` makes the
  whole page run as a script (below), the block included: no block is left unrun
  for want of a script.

A page whose blocks start a process pool (they name ``ProcessPoolExecutor``, or
``run_as_a_script`` is required) runs as a real script file in a fresh interpreter
instead, each block at its line of the ``.rst``: ``spawn`` and ``forkserver`` workers
import the script's ``__main__`` from its file, which must then be Python, not the page.

Blocks of other languages (``console``, ``text``...) and plain ``::`` literal blocks
are not run. The README's two set-up commands and the API reference's coverage of the
public names are checked here too.
"""
from __future__ import absolute_import, division, print_function

import glob
import io
import os
import re
import sys
import types

import pytest

import batch_processor
from helpers import run_script

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(REPO_ROOT, "docs")
README = os.path.join(REPO_ROOT, "README.rst")

INSTALL_COMMAND = 'pip install ".[demo]" && python -m batch_processor.demo'
TEST_COMMAND = 'pip install "tox>=4.5,<4.6" "virtualenv<20.22" && bash .ci/test'

_DIRECTIVE = re.compile(r"^(?P<indent>[ \t]*)\.\. code-block::[ \t]*(?P<language>\S*)[ \t]*$")
_REQUIRES = re.compile(r"^[ \t]*\.\. test-requires:(?P<modules>.*)$")
_OPTION = re.compile(r"^[ \t]*:[\w-]+:")


class Block(object):
    """One ``code-block`` of a page: its code, first line (1-based) and markers."""

    def __init__(self, path, lineno, code, requires):
        self.path = path
        self.lineno = lineno
        self.code = code
        self.requires = requires

    @property
    def py3_only(self):
        return any(line.strip() == "# py3 only" for line in self.code.splitlines())

    def __repr__(self):
        return "%s:%d" % (os.path.relpath(self.path, REPO_ROOT), self.lineno)


def _indent(line):
    return len(line) - len(line.lstrip())


def python_blocks(path):
    """The ``.. code-block:: python`` blocks of the page ``path``, in order."""
    with io.open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    blocks = []
    requires = []
    i = 0
    while i < len(lines):
        line = lines[i]
        marker = _REQUIRES.match(line)
        if marker:
            requires = marker.group("modules").split()
            i += 1
            continue
        directive = _DIRECTIVE.match(line)
        if not directive:
            if line.strip():
                requires = []
            i += 1
            continue
        language = directive.group("language")
        outer = len(directive.group("indent"))
        i += 1
        while i < len(lines) and (_OPTION.match(lines[i]) and _indent(lines[i]) > outer):
            i += 1  # the directive's options (:caption:, :emphasize-lines:...)
        body = []
        start = None
        while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > outer):
            if start is None and lines[i].strip():
                start = i
            if start is not None:
                body.append(lines[i])
            i += 1
        if language in ("python", "py", "python3") and start is not None:
            while body and not body[-1].strip():
                body.pop()
            inner = min(_indent(b) for b in body if b.strip())
            code = "\n".join(b[inner:] for b in body) + "\n"
            blocks.append(Block(path, start + 1, code, requires))
        requires = []
    return blocks


def pages():
    found = [README] + sorted(glob.glob(os.path.join(DOCS, "*.rst")))
    return [path for path in found if os.path.exists(path)]


#: The pseudo-module of the blocks that need a real script (see the module docstring).
AS_SCRIPT = "run_as_a_script"


def _missing(modules):
    missing = []
    for name in modules:
        if name == AS_SCRIPT:
            continue  # such a page runs as a script
        if name == "python3":
            if sys.version_info[0] < 3:
                missing.append(name)
            continue
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    return missing


def _runnable(path):
    """The blocks of the page ``path`` to run here, and those skipped with why."""
    run, skipped = [], []
    for block in python_blocks(path):
        if block.py3_only and sys.version_info[0] < 3:
            skipped.append((block, "py3 only"))
            continue
        missing = _missing(block.requires)
        if missing:
            skipped.append((block, "needs %s" % ", ".join(missing)))
            continue
        run.append(block)
    return run, skipped


def starts_process_pools(blocks):
    return any("ProcessPoolExecutor" in block.code or AS_SCRIPT in block.requires
               for block in blocks)


def run_page_as_script(path, directory):
    """Run the page's blocks as one script file in ``directory``; return the skipped ones.

    Each block stands at its line of the ``.rst``, so a traceback's line numbers are
    the page's. The script runs with warnings as errors, as the tests do.
    """
    blocks, skipped = _runnable(path)
    # The fork server (3.14+) imports the script as its ``__main__`` before it forks the
    # workers: the page's unguarded blocks run there too and leave threads, and 3.15
    # then warns at each fork; that warning is the fork server's, not the library's.
    lines = ["import warnings; warnings.simplefilter('error'); warnings.filterwarnings("
             "'ignore', 'Running attrs on Python 3.6', DeprecationWarning); "
             "warnings.filterwarnings('ignore', 'This process .* is multi-threaded, use of "
             "fork', DeprecationWarning)"]
    for block in blocks:
        lines.extend([""] * (block.lineno - 1 - len(lines)))
        lines.extend(block.code.splitlines())
    name = os.path.splitext(os.path.basename(path))[0].replace("-", "_") + "_page.py"
    script = os.path.join(str(directory), name)
    with io.open(script, "w", encoding="utf-8") as f:
        f.write(u"\n".join(lines) + u"\n")
    returncode, stdout, stderr = run_script(path=script)
    assert returncode == 0, "%s (run as %s) failed:\n%s%s" % (path, script, stdout, stderr)
    return skipped


def run_page(path):
    """Execute the page's Python blocks in order; return the blocks skipped and why."""
    module = types.ModuleType("__main__")
    module.__file__ = path
    namespace = module.__dict__
    saved_main = sys.modules.get("__main__")
    # Classes defined by the examples must be found by pickle (process pools), which
    # looks them up in sys.modules["__main__"], as it would in a user's script.
    sys.modules["__main__"] = module
    try:
        blocks, skipped = _runnable(path)
        for block in blocks:
            # Pad with newlines so that tracebacks give the line in the .rst file.
            source = "\n" * (block.lineno - 1) + block.code
            exec(compile(source, path, "exec"), namespace)
    finally:
        if saved_main is not None:
            sys.modules["__main__"] = saved_main
        namespace.clear()
    return skipped


@pytest.mark.parametrize("path", pages(), ids=lambda p: os.path.relpath(p, REPO_ROOT))
def test_page_examples_run(path, capsys, tmpdir):
    assert python_blocks(path) or os.path.basename(path) in ("api.rst", "changelog.rst", "index.rst"), \
        "%s has no Python example to run" % path
    if starts_process_pools(_runnable(path)[0]):
        skipped = run_page_as_script(path, tmpdir)
    else:
        skipped = run_page(path)
    if skipped:
        with capsys.disabled():
            for block, why in skipped:
                sys.stderr.write("\n  skipped %r (%s)" % (block, why))


def test_the_docs_have_pages():
    names = set(os.path.basename(p) for p in pages())
    assert set(["README.rst", "index.rst", "quickstart.rst", "concepts.rst", "cookbook.rst",
                "migration.rst", "guarantees.rst", "api.rst", "changelog.rst"]) <= names


def test_blocks_that_need_a_script_run_in_one(tmpdir):
    page = tmpdir.join("script.rst")
    page.write(u"\n".join([
        u"Script", u"======", u"",
        u".. code-block:: python", u"",
        u"    import os", u"",
        u".. test-requires: run_as_a_script", u"",
        u".. code-block:: python", u"",
        u"    if __name__ == '__main__':",
        u"        open(os.path.join(%r, 'ran'), 'w').close()" % str(tmpdir), u""]))
    blocks = python_blocks(str(page))
    assert starts_process_pools(_runnable(str(page))[0])
    assert run_page_as_script(str(page), tmpdir) == []  # nothing skipped
    assert tmpdir.join("ran").check()
    assert len(blocks) == 2


def test_readme_starts_with_the_two_commands():
    with io.open(README, encoding="utf-8") as f:
        lines = [line.strip() for line in f.read().splitlines()]
    assert INSTALL_COMMAND in lines, "the install-and-demo command must be on a line of its own"
    assert TEST_COMMAND in lines, "the test command must be on a line of its own"
    install, test = lines.index(INSTALL_COMMAND), lines.index(TEST_COMMAND)
    assert install < test
    first_section = [i for i, line in enumerate(lines) if line and set(line) == set("-")]
    assert not first_section or test < first_section[0], \
        "the two commands must come before the first section of the README"


def test_api_reference_covers_every_public_name():
    with io.open(os.path.join(DOCS, "api.rst"), encoding="utf-8") as f:
        text = f.read()
    documented = set(re.findall(r"^\.\. (?:auto\w+|py:\w+):: (?:batch_processor\.)?(\w+)", text, re.M))
    missing = sorted(set(batch_processor.__all__) - documented)
    assert not missing, "docs/api.rst does not document %s" % ", ".join(missing)


def test_block_parser_finds_markers(tmpdir):
    page = tmpdir.join("page.rst")
    page.write(u"\n".join([
        u"Title",
        u"=====",
        u"",
        u".. code-block:: python",
        u"   :caption: one",
        u"",
        u"   x = 1",
        u"",
        u"   y = x + 1",
        u"",
        u".. code-block:: python",
        u"",
        u"    # py3 only",
        u"    z = 3",
        u"",
        u".. test-requires: no_such_module_here",
        u"",
        u".. code-block:: python",
        u"",
        u"    w = 4",
        u"",
        u".. code-block:: console",
        u"",
        u"   $ not python",
        u"",
        u"Text.",
    ]))
    blocks = python_blocks(str(page))
    assert [(b.lineno, b.code, b.requires, b.py3_only) for b in blocks] == [
        (7, "x = 1\n\ny = x + 1\n", [], False),
        (13, "# py3 only\nz = 3\n", [], True),
        (20, "w = 4\n", ["no_such_module_here"], False),
    ]
    expected = ["needs no_such_module_here"]
    if sys.version_info[0] < 3:
        expected.insert(0, "py3 only")
    assert [why for _, why in run_page(str(page))] == expected


def test_a_failing_example_points_at_its_rst_line(tmpdir):
    page = tmpdir.join("broken.rst")
    page.write(u"Broken\n======\n\n.. code-block:: python\n\n   ok = 1\n   1 / 0\n")
    with pytest.raises(ZeroDivisionError) as info:
        run_page(str(page))
    assert info.traceback[-1].lineno + 1 == 7
    assert str(info.traceback[-1].path).endswith("broken.rst")


def _fake_bin(tmpdir, names):
    """A directory of stand-ins: ``bash`` and ``dirname`` the real ones, ``names``
    executables that only say they ran."""
    import stat
    bin_dir = tmpdir.mkdir("bin")
    for tool in ("bash", "dirname"):
        real = None
        for directory in ("/bin", "/usr/bin"):
            if os.path.exists(os.path.join(directory, tool)):
                real = os.path.join(directory, tool)
                break
        if real is None:
            pytest.skip("no %s here" % tool)
        os.symlink(real, str(bin_dir.join(tool)))
    for name in names:
        path = bin_dir.join(name)
        path.write("#!/bin/sh\necho ran %s \"$@\"\n" % name)
        path.chmod(path.stat().mode | stat.S_IXUSR)
    return bin_dir


@pytest.mark.skipif(sys.platform == "win32", reason="a bash script")
@pytest.mark.parametrize("present, message", [
    ([], "FATAL: tox is not on PATH"),
    (["tox", "python3.11"], "FATAL: python2.7"),
    (["tox", "python2.7"], "FATAL: python3.11"),
])
def test_the_test_command_fails_loudly_without_a_required_interpreter(tmpdir, present, message):
    import subprocess
    bin_dir = _fake_bin(tmpdir, [name for name in present if name == "tox"])
    pyenv = tmpdir.mkdir("pyenv")
    for name in present:
        if name.startswith("python"):  # found by the script under pyenv's versions
            version_bin = pyenv.mkdir("versions").mkdir(name).mkdir("bin")
            target = version_bin.join(name)
            target.write("#!/bin/sh\n")
            target.chmod(0o755)
    env = {"PATH": str(bin_dir), "PYENV_ROOT": str(pyenv), "HOME": str(tmpdir)}
    process = subprocess.Popen(["bash", os.path.join(REPO_ROOT, ".ci", "test")], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               executable=str(bin_dir.join("bash")))
    out, err = process.communicate()
    assert process.returncode == 1
    assert message in err.decode("utf-8", "replace")
    assert b"ran tox" not in out  # nothing was tested, and nothing says congratulations
