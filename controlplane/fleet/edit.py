"""Change the fleet's human-edited YAML the way a careful human would.

The fleet files are read and written by people: an edit made by the control plane keeps
their comments, key order, quoting and layout, so its diff shows only the lines that
changed. Every edit goes the same way:

    with editing(fleet_dir) as edit:
        edit.doc("stacks")["stacks"]["amsterdam"]["uitkering"]["version"] = ...

Inside the block the documents are ruamel.yaml round-trip trees (mappings and sequences
that remember their comments and style). When the block ends, the whole fleet as it
would be (fleet, windows, maintenance jobs, costs) is validated with the normal loaders;
only if it is valid are the changed files written, each atomically (a temporary file
beside it, then a rename, keeping the file's mode), so a reader sees either the old file
or the new one. If the block raises or the result is invalid, nothing is written. The
fleet directory is locked for the whole edit, so two edits never lose each other's
change.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import YAMLError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, SingleQuotedScalarString

from controlplane.errors import FleetInvalid, InvalidInput, NotFound
from controlplane.fleet.loader import FILES, load_fleet
from controlplane.fleet.model import Fleet, check_version

# Every file a fleet directory may hold that the control plane reads as YAML.
DOCUMENTS = (*FILES, "windows", "maintenance", "costs")

# (mapping, sequence, offset) indentations tried on each file, the first that reproduces
# it exactly wins; the shipped fleets use the first.
_INDENTS = ((2, 4, 2), (2, 2, 0), (4, 4, 2), (4, 6, 4), (4, 4, 0), (4, 2, 0), (3, 3, 1))


def validate_fleet(directory: Path) -> Fleet:
    """Load and cross-check every fleet file in ``directory`` as ``controlplane validate``
    does; the first problem raises one error naming the file and field."""
    from controlplane.costs.loader import costs_path, load_costs
    from controlplane.maintenance.loader import load_jobs
    from controlplane.windows.loader import load_gate

    fleet = load_fleet(directory)
    gate = load_gate(directory, fleet)
    load_jobs(directory, fleet, gate)
    if costs_path(directory).exists():
        load_costs(directory, fleet)
    return fleet


@dataclass
class _Document:
    path: Path
    original: str | None  # as read; None: the file does not exist yet
    data: Any
    yaml: YAML
    exact: bool  # dumping the unchanged data reproduces the file


class FleetEdit:
    """The documents of one fleet directory, loaded for change on first use."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._docs: dict[str, _Document] = {}

    def doc(self, name: str) -> Any:
        """The round-trip tree of ``<name>.yml`` (an empty mapping when the file does not
        exist yet); change it in place."""
        if name not in DOCUMENTS:
            raise InvalidInput(f"{name}: not a fleet file (one of {', '.join(DOCUMENTS)})")
        if name not in self._docs:
            self._docs[name] = _load(self.directory / f"{name}.yml")
        return self._docs[name].data

    def rendered(self) -> dict[str, str]:
        """The new text of every document that changed, by name."""
        out: dict[str, str] = {}
        for name, doc in self._docs.items():
            text = _render(doc)
            if text != doc.original:
                out[name] = text
        return out

    def commit(self) -> dict[str, str]:
        """Validate the fleet as it would be, then write what changed; returns the new
        texts by name (empty when nothing changed)."""
        changed = self.rendered()
        if not changed:
            return changed
        _validate_with(self.directory, changed)
        # Written only after every file validated together; each rename is atomic.
        for name, text in changed.items():
            write_atomic(self._docs[name].path, text)
        return changed


@contextmanager
def editing(directory: Path) -> Iterator[FleetEdit]:
    """Lock the fleet directory, hand out its documents for change, and on a normal exit
    validate and write them (see the module's description)."""
    if not directory.is_dir():
        raise FleetInvalid("", "fleet directory does not exist", str(directory))
    with _locked(directory):
        edit = FleetEdit(directory)
        yield edit
        edit.commit()


@dataclass(frozen=True)
class VersionChange:
    """A member app's declared version before and after an edit of ``file``."""

    file: Path
    member: str
    app: str
    before: str
    after: str

    @property
    def changed(self) -> bool:
        return self.before != self.after


def set_version(directory: Path, member: str, app: str, version: str) -> VersionChange:
    """Declare ``version`` for ``member``'s ``app`` in ``stacks.yml``, keeping the quoting
    the old value had. The version must be in the app's catalogue (the fleet validates)."""
    try:
        check_version(version)
    except ValueError as exc:
        raise InvalidInput(f"version: {exc}") from None
    with editing(directory) as edit:
        stacks = edit.doc("stacks")
        body = _entry(stacks, ("stacks", member, app), f"stacks.{member}.{app}")
        old = body.get("version")
        before = "" if old is None else str(old)
        if before != version:
            body["version"] = same_style(old, version)
    return VersionChange(directory / "stacks.yml", member, app, before, version)


def same_style(old: Any, new: str) -> str:
    """``new`` quoted the way ``old`` was; a plain value is left to the dumper, which quotes
    it only when it would otherwise read back as something other than text."""
    styled: str = new
    if isinstance(old, DoubleQuotedScalarString):
        styled = DoubleQuotedScalarString(new)
    elif isinstance(old, SingleQuotedScalarString):
        styled = SingleQuotedScalarString(new)
    return styled


def _entry(doc: Any, keys: tuple[str, ...], where: str) -> CommentedMap:
    node = doc
    for key in keys:
        if not isinstance(node, Mapping) or key not in node:
            raise NotFound(f"{where}: not in the fleet's stacks.yml")
        node = node[key]
    if not isinstance(node, CommentedMap):
        raise FleetInvalid(where, "must be a mapping", "stacks.yml")
    return node


# -- reading and writing ---------------------------------------------------------------------


def _yaml(indent: tuple[int, int, int], explicit_start: bool) -> YAML:
    y = YAML()  # round-trip
    y.preserve_quotes = True
    y.width = 1 << 16  # never re-wrap a long line
    mapping, sequence, offset = indent
    y.indent(mapping=mapping, sequence=sequence, offset=offset)
    y.explicit_start = explicit_start
    return y


def _dump(y: YAML, data: Any) -> str:
    out = io.StringIO()
    y.dump(data, out)
    return out.getvalue()


def _load(path: Path) -> _Document:
    try:
        with open(path, encoding="utf-8", newline="") as f:  # keep \r\n as written
            original = f.read()
    except FileNotFoundError:
        return _Document(path, None, CommentedMap(), _yaml(_INDENTS[0], False), True)
    except OSError as exc:
        raise FleetInvalid("", f"cannot read: {exc.strerror}", str(path)) from None
    text = original.replace("\r\n", "\n")
    explicit = text.lstrip().startswith("---")
    best: _Document | None = None
    best_ratio = -1.0
    for indent in _INDENTS:
        y = _yaml(indent, explicit)
        try:
            data = y.load(text)
        except YAMLError as exc:
            problem = str(exc).strip().splitlines()[0]
            raise FleetInvalid("", f"YAML error: {problem}", str(path)) from None
        again = _dump(y, data)
        if again == text:
            return _Document(path, original, data, y, True)
        ratio = SequenceMatcher(None, again, text, autojunk=False).ratio()
        if ratio > best_ratio:
            best, best_ratio = _Document(path, original, data, y, False), ratio
    assert best is not None
    return best


def _render(doc: _Document) -> str:
    """The document's new text. Where ruamel does not reproduce the file's own layout
    exactly, the change is carried over onto the original lines instead, so the rest of
    the file stays as its author wrote it."""
    new = _dump(doc.yaml, doc.data)
    if doc.original is None:
        return new
    crlf = "\r\n" in doc.original
    original = doc.original.replace("\r\n", "\n")
    if new == original:
        return doc.original
    if not doc.exact:
        noop = _dump(doc.yaml, doc.yaml.load(original))
        spliced = splice(original, noop, new)
        if spliced is not None and _same_data(spliced, new):
            new = spliced
    return new.replace("\n", "\r\n") if crlf else new


def splice(original: str, noop: str, new: str) -> str | None:
    """Apply the change from ``noop`` (the original as the dumper writes it) to ``new`` onto
    ``original`` line by line; ``None`` when a change touches a line whose layout the
    dumper does not reproduce."""
    orig_lines = original.splitlines(keepends=True)
    noop_lines = noop.splitlines(keepends=True)
    new_lines = new.splitlines(keepends=True)
    to_orig: dict[int, int] = {}
    for tag, i1, i2, j1, _ in SequenceMatcher(
        None, noop_lines, orig_lines, autojunk=False
    ).get_opcodes():
        if tag == "equal":
            to_orig.update({i1 + k: j1 + k for k in range(i2 - i1)})
    out: list[str] = []
    pos = 0
    for tag, i1, i2, j1, j2 in SequenceMatcher(
        None, noop_lines, new_lines, autojunk=False
    ).get_opcodes():
        if tag == "equal":
            continue
        if i1 < i2:
            mapped = [to_orig.get(k) for k in range(i1, i2)]
            first = mapped[0]
            if first is None or mapped != list(range(first, first + len(mapped))):
                return None
            start, end = first, first + len(mapped)
        else:
            # An insertion: its neighbours must be lines the original has side by side.
            prev = to_orig.get(i1 - 1) if i1 > 0 else -1
            nxt = to_orig.get(i1) if i1 < len(noop_lines) else len(orig_lines)
            if prev is None or nxt is None or nxt != prev + 1:
                return None
            start = end = nxt
        if start < pos:
            return None
        out.extend(orig_lines[pos:start])
        out.extend(new_lines[j1:j2])
        pos = end
    out.extend(orig_lines[pos:])
    return "".join(out)


def _same_data(a: str, b: str) -> bool:
    try:
        return bool(yaml.safe_load(a) == yaml.safe_load(b))
    except yaml.YAMLError:
        return False


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` (followed through a link) with ``text``: a temporary file in the
    same directory, flushed to disk, given the old file's mode (and owner, where allowed),
    then renamed over it, so no reader ever sees half a file."""
    target = path.resolve()
    try:
        st: os.stat_result | None = target.stat()
    except FileNotFoundError:
        st = None
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if st is not None:
            os.chmod(tmp, stat.S_IMODE(st.st_mode))
            if (st.st_uid, st.st_gid) != (os.getuid(), os.getgid()):
                # Only root may give a file away; the mode holds either way.
                with contextlib.suppress(PermissionError):
                    os.chown(tmp, st.st_uid, st.st_gid)
        else:
            os.chmod(tmp, _new_file_mode(target.parent))
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a crash
    finally:
        os.close(dir_fd)


def _new_file_mode(directory: Path) -> int:
    """A new fleet file reads like its siblings (the fleet is a checkout, often 0644)."""
    for name in FILES:
        sibling = directory / f"{name}.yml"
        if sibling.is_file():
            return stat.S_IMODE(sibling.stat().st_mode) & ~0o111
    return 0o600


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """An exclusive lock on the fleet directory itself (held on its inode, so a file
    replaced by rename inside it does not drop the lock), across processes."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _validate_with(directory: Path, changed: Mapping[str, str]) -> Fleet:
    """Validate the fleet with ``changed`` in place of those files, without touching the
    fleet directory: a private shadow directory links every other entry and holds the new
    texts. Errors name the real fleet directory."""
    shadow = Path(tempfile.mkdtemp(prefix="cp-fleet-edit-"))
    try:
        for entry in directory.iterdir():
            if entry.name not in {f"{n}.yml" for n in changed}:
                (shadow / entry.name).symlink_to(entry.resolve())
        for name, text in changed.items():
            (shadow / f"{name}.yml").write_text(text, encoding="utf-8")
        try:
            return validate_fleet(shadow)
        except FleetInvalid as exc:
            file = None if exc.file is None else exc.file.replace(str(shadow), str(directory))
            raise FleetInvalid(exc.field, f"{exc.problem} (nothing was written)", file) from None
        except (InvalidInput, NotFound) as exc:
            text = str(exc).replace(str(shadow), str(directory))
            raise InvalidInput(f"{text} (nothing was written)") from None
    finally:
        shutil.rmtree(shadow, ignore_errors=True)
