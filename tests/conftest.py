"""Shared fixtures: real sshd hosts, a fresh PostgreSQL database, store engines, fleets.

In CI (``CI=true``) a missing PostgreSQL or sshd fails the run; on a laptop it skips.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine, text

from controlplane.fleet.loader import load_fleet
from controlplane.fleet.model import Fleet
from controlplane.store.db import make_engine, migrate
from controlplane.store.schema import metadata
from tests.sshd import SshLab, find_sshd, start_lab

ROOT = Path(__file__).resolve().parent.parent
LAB = ROOT / "controlplane" / "inventories" / "lab"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PG_ADMIN = os.environ.get("CONTROLPLANE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def missing(what: str) -> None:
    """Fail in CI (a missing service is a broken install there), skip elsewhere."""
    if IN_CI:
        pytest.fail(f"{what} (CI=true, so this fails instead of skipping)")
    pytest.skip(f"{what} (skipped outside CI)")


# -- PostgreSQL ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for the whole test session, dropped afterwards."""
    name = f"cp_test_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        missing(f"PostgreSQL at {PG_ADMIN} is not reachable: {exc}".splitlines()[0])
    base = PG_ADMIN.rsplit("/", 1)[0]
    yield f"{base}/{name}".replace("postgresql://", "postgresql+psycopg://", 1)
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def fresh_pg_url(pg_url: str) -> Iterator[str]:
    """An empty PostgreSQL database of its own, for tests that start from nothing."""
    name = f"cp_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = pg_url.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_engine(pg_url: str) -> Iterator[Engine]:
    engine = make_engine(pg_url)
    migrate(engine)
    yield engine
    engine.dispose()


def _truncate(engine: Engine) -> None:
    with engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(text(f"DELETE FROM {table.name}"))


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated, empty store on each backend: the contract suite runs over both."""
    if request.param == "sqlite":
        eng = make_engine(f"sqlite:///{tmp_path / 'controlplane.db'}")
        migrate(eng)
        yield eng
        eng.dispose()
    else:
        eng = request.getfixturevalue("pg_engine")
        _truncate(eng)
        yield eng
        _truncate(eng)


@pytest.fixture
def sql(tmp_path: Path) -> Iterator[Engine]:
    """A migrated SQLite store of the test's own (the embedded default backend)."""
    eng = make_engine(f"sqlite:///{tmp_path / 'cp.db'}")
    migrate(eng)
    yield eng
    eng.dispose()


# -- sshd test hosts -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def ssh_lab_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshLab]:
    if find_sshd() is None:
        missing("sshd is not installed; scripts/setup.sh installs openssh-server")
    if shutil.which("ssh") is None:
        missing("the ssh client is not installed")
    lab = start_lab(tmp_path_factory.mktemp("sshd"), count=4)
    yield lab
    lab.stop_all()


@pytest.fixture
def ssh_lab(ssh_lab_session: SshLab) -> Iterator[SshLab]:
    """Four running sshd hosts (127.0.0.2-5), each with a fresh, empty root directory.

    The roots are not under pytest's private (0700) tmp dir: the playbooks run each
    member's app as that member's system user, which must be able to reach its files."""
    ssh_lab_session.ensure_running()
    roots = Path(tempfile.mkdtemp(prefix="cp-roots-"))
    roots.chmod(0o711)
    ssh_lab_session.fresh_roots(roots)
    yield ssh_lab_session
    ssh_lab_session.ensure_running()
    shutil.rmtree(roots, ignore_errors=True)


def remote_python() -> str:
    return "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable


def ssh_fleet(lab: SshLab, hosts: int = 2) -> Fleet:
    """A fleet on ``hosts`` of the sshd test hosts, with the lab's members and apps."""
    lab_fleet = load_fleet(LAB)
    chosen = lab.hosts[:hosts]
    from controlplane.fleet.model import Capacity, ConnectionKind, Host, Instance, Stack, StackApp

    fleet_hosts = tuple(
        Host(
            name=h.name,
            address=h.address,
            capacity=Capacity(vcpu=16, ram_gib=64, disk_gib=500),  # type: ignore[arg-type]
            connection=ConnectionKind.SSH,
            port=h.port,
            user="root",
            python_interpreter=remote_python(),
            private_key_file=str(lab.client_key),
            known_hosts_file=str(lab.known_hosts),
            root=str(h.root),
        )
        for h in chosen
    )
    stacks = tuple(
        Stack(
            member=m.slug,
            apps=tuple(
                StackApp(
                    app=app.slug,
                    version=app.latest_good.version,
                    instances=tuple(
                        Instance(host=h.name, port=9000 + 10 * mi + ai) for h in chosen
                    ),
                )
                for ai, app in enumerate(lab_fleet.apps)
            ),
        )
        for mi, m in enumerate(lab_fleet.members[:2])
    )
    return Fleet(
        name="ssh-test",
        members=lab_fleet.members,
        hosts=fleet_hosts,
        apps=lab_fleet.apps,
        stacks=stacks,
    )


@pytest.fixture
def cli(
    engine: Engine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Callable[..., tuple[int, str, str]]:
    """``controlplane ...`` in-process against the test's store, as user alice@cp1:
    (exit code, stdout, stderr)."""
    from controlplane.cli import run

    monkeypatch.setenv("CONTROLPLANE_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("CONTROLPLANE_DATABASE_URL", engine.url.render_as_string(False))
    monkeypatch.setenv("CONTROLPLANE_FLEET", str(LAB))
    monkeypatch.setenv("CONTROLPLANE_USER", "alice@cp1")

    def invoke(*args: str) -> tuple[int, str, str]:
        code = run(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return invoke
