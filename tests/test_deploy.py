"""Issue 18: README's "A real deployment", followed as an administrator does, command by command.

Every command runs as cron runs it: a process of its own, no request, nothing in its environment
but ``PM_CONFIG`` (the settings file, ``PM_ENV=production``, real-length random keys). On the
PostgreSQL server of TEST_DATABASE_URL the database belongs to an owner role that runs the
migrations and ``db grants``; every other command runs as the least-privilege app role. On SQLite
the same steps run on a file (no roles). The steps share one deployment, in order, and README
must list exactly the commands they ran, in the same order.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from app import ROOT, create_app
from tests import databases
from tests.helpers import valid_id

FLASK = str(Path(sys.executable).parent / "flask")
PG_BIN = Path("/usr/lib/postgresql/15/bin")  # the test server's major version (as tests/test_backup.py)
GROUPS = {"db", "workflow", "statistics", "audit", "keys", "backup"}  # two-word commands
STEPS = [
    "db upgrade",
    "db grants",
    "seed",
    "create-admin",
    "import-registry",
    "import-registry",
    "sweep",
    "workflow remind",
    "retention",
    "statistics weekly",
    "audit checkpoint",
    "audit verify",
    "keys reencrypt",
    "keys status",
    "backup create",
    "backup verify",
    "backup restore",
]  # README's commands, in its order; the deployment test runs exactly these
ADMIN_PASSWORD = "Deploy-Admin-2026!"
MANAGER_PASSWORD = "Deploy-Manager-2026!"


def field_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


@dataclass
class Deployment:
    root: Path
    app_url: str
    owner_url: str
    app_role: str | None  # None on SQLite
    settings: dict[str, str]
    ran: list[str] = field(default_factory=list)  # the commands README must list, in order

    @property
    def config_file(self) -> Path:
        return self.root / "wuye.env"

    def write_settings(self, **changes: str) -> None:
        """The settings file as an administrator keeps it: KEY=VALUE lines, a comment."""
        self.settings.update(changes)
        lines = ["# /etc/wuye.env (test copy)"] + [f"{k}={v}" for k, v in self.settings.items()]
        self.config_file.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def flask(
        self, *args: str, owner: bool = False, readme: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``.venv/bin/flask --app app ARGS`` with cron's environment: PATH, HOME and PM_CONFIG."""
        environment = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.root),
            "LANG": "C.UTF-8",
            "PM_CONFIG": str(self.config_file),
            "PM_INSTANCE_PATH": str(self.root / "instance"),
        }
        if owner:
            environment["DATABASE_URL"] = self.owner_url
        environment.update(env or {})
        if readme:
            words = [a for a in args if not a.startswith("-")]
            self.ran.append(" ".join(words[:2] if words[0] in GROUPS else words[:1]))
        return subprocess.run(
            [FLASK, "--app", "app", *args], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300
        )

    def app(self):  # type: ignore[no-untyped-def]
        """The app in this process, as the app role: what a user does on the screens."""
        app = create_app(
            {
                **databases.TEST_CONFIG,
                **{k: v for k, v in self.settings.items() if k != "DATABASE_URL"},
                "SQLALCHEMY_DATABASE_URI": self.app_url,
                "PM_ENV": "production",
            }
        )
        app.instance_path = str(self.root / "instance")
        return app


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout


def refused(result: subprocess.CompletedProcess[str]) -> str:
    """A refusal: a non-zero exit and one line of error, no traceback."""
    assert result.returncode != 0, result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


@pytest.fixture()
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("deploy")
    server = databases.server_url()
    roles: list[str] = []
    if server:
        name = databases.database_name(f"deploy_{databases.worker_id()}")
        owner, app_role = f"{name}_owner", f"{name}_app"
        roles = [app_role, owner]
        admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            for role in roles:
                conn.exec_driver_sql(f'DROP ROLE IF EXISTS "{role}"')
            # README step 3, as the server's superuser
            conn.exec_driver_sql(f"CREATE ROLE \"{owner}\" LOGIN CREATEDB PASSWORD 'owner-pw'")
            conn.exec_driver_sql(f"CREATE ROLE \"{app_role}\" LOGIN PASSWORD 'app-pw'")
            conn.exec_driver_sql(f'CREATE DATABASE "{name}" OWNER "{owner}"')
        admin.dispose()
        inside = sa.create_engine(databases.with_database(server, name), isolation_level="AUTOCOMMIT")
        with inside.connect() as conn:
            conn.exec_driver_sql(f'ALTER SCHEMA public OWNER TO "{owner}"')
            conn.exec_driver_sql("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        inside.dispose()
        base = sa.engine.make_url(server).set(database=name)
        owner_url = base.set(username=owner, password="owner-pw").render_as_string(hide_password=False)
        app_url = base.set(username=app_role, password="app-pw").render_as_string(hide_password=False)
    else:
        name, app_role = None, None
        owner_url = app_url = f"sqlite:///{root / 'wuye.db'}"
    settings = {
        "PM_ENV": "production",
        "DATABASE_URL": app_url,
        "SECRET_KEY": secrets.token_urlsafe(32),
        "BLIND_INDEX_KEY": secrets.token_urlsafe(32),
        "AUDIT_KEY": secrets.token_urlsafe(32),
        "FIELD_ENCRYPTION_KEYS": f"k1:{field_key()}",
        "AUDIT_CHECKPOINT_FILE": str(root / "outside" / "checkpoints.jsonl"),
    }
    if PG_BIN.is_dir():  # pg_dump/pg_restore of the server's major version
        settings["PG_BIN_DIR"] = str(PG_BIN)
    deployment = Deployment(root, app_url, owner_url, app_role, settings)
    deployment.write_settings()
    yield deployment
    if server:
        admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            for database in (name, f"{name}_restore"):
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            for role in roles:
                conn.exec_driver_sql(f'DROP ROLE IF EXISTS "{role}"')
        admin.dispose()


# --- README step 5: schema as the owner, the app role's rights -----------------------------------
def step_deploy_upgrade_as_owner_then_grants_for_the_app_role(deployment: Deployment) -> None:
    ok(deployment.flask("db", "upgrade", owner=True))
    if deployment.app_role is None:
        deployment.ran.append("db grants")  # SQLite has no roles: README's step is PostgreSQL's
        return
    assert f"granted {deployment.app_role}" in ok(deployment.flask("db", "grants", deployment.app_role, owner=True))
    engine = sa.create_engine(deployment.app_url)
    try:
        with engine.connect() as conn:  # the app role cannot lift the audit guards or change the schema
            for statement in (
                "ALTER TABLE audit_entry DISABLE TRIGGER USER",
                "DROP TABLE duty_log",
                "UPDATE audit_entry SET action = 'x'",
            ):
                with pytest.raises(sa.exc.ProgrammingError, match="must be owner|permission denied"):
                    conn.exec_driver_sql(statement)
                conn.rollback()
    finally:
        engine.dispose()


# --- step 6: first data, as the app role -----------------------------------------------------------
def step_deploy_seed_departments_and_refuse_the_demo_in_production(deployment: Deployment) -> None:
    assert "departments ready" in ok(deployment.flask("seed"))
    line = refused(deployment.flask("seed", "--demo", readme=False))
    assert "PM_ENV is production" in line


def step_acc_1_deploy_create_admin_from_the_cli(deployment: Deployment) -> None:
    out = ok(
        deployment.flask(
            "create-admin", "--username", "boss", "--full-name", "系统管理员 王", "--password", ADMIN_PASSWORD
        )
    )
    assert "created admin boss" in out


def step_reg_1_deploy_import_units_and_residents(deployment: Deployment) -> None:
    from models import Estate, Staff, db
    from security import accounts

    app = deployment.app()
    with app.app_context():  # on 房产登记 the admin creates the estate, and a manager account
        db.session.add(Estate(code="hz", name="和泽花园", kind="residential"))
        accounts.create_staff("mgr", "经理 何", MANAGER_PASSWORD, {"manager"}, department_key="cs")
        db.session.commit()
        assert db.session.scalar(sa.select(Staff.username).where(Staff.username == "boss")) == "boss"
        db.engine.dispose()
    units = deployment.root / "units.csv"
    units.write_text(
        "小区编码,楼栋,房号,楼层,建筑面积,用途\nhz,A,A-1-101,1,88.5,住宅\nhz,A,A-1-102,1,90,住宅\n", encoding="utf-8"
    )
    residents = deployment.root / "residents.csv"
    residents.write_text(
        "小区编码,房号,姓名,身份证号,关系,开始日期\n"
        f"hz,A-1-101,赵一,{valid_id(1)},业主,2024-01-01\n"
        f"hz,A-1-102,钱二,{valid_id(2)},业主,2024-02-01\n",
        encoding="utf-8",
    )
    assert "written: yes" in ok(
        deployment.flask("import-registry", str(units), "--kind", "units", "--mode", "all_or_nothing")
    )
    assert "written: yes" in ok(
        deployment.flask("import-registry", str(residents), "--kind", "residents", "--mode", "all_or_nothing")
    )


# --- step 7: the periodic commands -----------------------------------------------------------------
def step_deploy_sweep_and_remind_from_cron(deployment: Deployment) -> None:
    assert "sweep:" in ok(deployment.flask("sweep"))
    assert "reminders sent: 0" in ok(deployment.flask("workflow", "remind"))


def step_deploy_retention_purges_a_due_batch_as_the_app_role(deployment: Deployment) -> None:
    """REGULATIONS §10: the redaction's column UPDATE and the duty log's DELETE are the app role's."""
    from models import Staff, db
    from models.base import utcnow
    from models.duty import DutyLog
    from models.retention import RetentionPolicy
    from workflow import retention_batch

    app = deployment.app()
    with app.app_context():
        db.session.add(DutyLog(kind="other", body="五年前的夜班记录", created_at=utcnow() - timedelta(days=5 * 366)))
        db.session.commit()
        manager = db.session.scalar(sa.select(Staff).where(Staff.username == "mgr"))
        policy = db.session.scalar(sa.select(RetentionPolicy).where(RetentionPolicy.code == "dty3_duty_log"))
        batch = retention_batch.list_batch(policy, manager)
        retention_batch.approve(batch, manager, MANAGER_PASSWORD)
        db.session.commit()
        batch_id = batch.id
        db.session.remove()
        db.engine.dispose()
    out = ok(deployment.flask("retention", "--run", str(batch_id)))
    assert f"batch {batch_id}: done; done 1, skipped 0" in out
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(DutyLog)) == 0
        db.engine.dispose()


def step_cmp_7_deploy_statistics_weekly_to_a_file_outside_a_request(deployment: Deployment) -> None:
    """The printed-form helpers ran only inside a signed-in request; cron has none."""
    target = deployment.root / "weekly.pdf"
    assert "complaints=0 mailed=0" in ok(deployment.flask("statistics", "weekly", "--output", str(target)))
    assert target.read_bytes().startswith(b"%PDF")


def step_acc_7_deploy_audit_checkpoint_and_verify(deployment: Deployment) -> None:
    assert "appended to" in ok(deployment.flask("audit", "checkpoint"))
    out = ok(deployment.flask("audit", "verify", "--checkpoints", deployment.settings["AUDIT_CHECKPOINT_FILE"]))
    assert "chain intact" in out and "every checkpointed row present" in out


# --- step 8: key rotation ---------------------------------------------------------------------------
def step_acc_6_deploy_reencrypt_then_retire_the_old_key(deployment: Deployment) -> None:
    from models import Resident, db

    old = deployment.settings["FIELD_ENCRYPTION_KEYS"]
    new = f"k2:{field_key()}"
    deployment.write_settings(FIELD_ENCRYPTION_KEYS=new)  # k1 dropped too early: a clear error, nothing lost
    line = refused(deployment.flask("keys", "reencrypt", readme=False))
    assert "no key 'k1'" in line
    deployment.write_settings(FIELD_ENCRYPTION_KEYS=f"{new},{old}")
    assert "re-encrypted 2 value(s) with k2; no value uses another key" in ok(deployment.flask("keys", "reencrypt"))
    deployment.write_settings(FIELD_ENCRYPTION_KEYS=new)  # k1 retired
    out = ok(deployment.flask("keys", "status"))
    assert "resident.id_number: k2: 2" in out and "k1" not in out
    with deployment.app().app_context():
        assert sorted(db.session.scalars(sa.select(Resident.id_number))) == [valid_id(1), valid_id(2)]
        db.engine.dispose()


# --- step 9: backups and the restore drill --------------------------------------------------------
def step_deploy_backup_as_the_app_verify_and_restore_as_the_owner(deployment: Deployment) -> None:
    from models import Resident, db

    out = ok(deployment.flask("backup", "create", str(deployment.root / "backups")))
    archive = re.match(r"backup: (\S+) \(", out).group(1)  # type: ignore[union-attr]
    assert "chain intact" in ok(deployment.flask("backup", "verify", archive, owner=True))
    restored = sa.engine.make_url(deployment.owner_url)
    restored = restored.set(database=f"{restored.database}_restore")
    admin = sa.create_engine(databases.server_url(), isolation_level="AUTOCOMMIT")  # type: ignore[arg-type]
    with admin.connect() as conn:  # README step 9: an empty database the owner owns
        conn.exec_driver_sql(f'CREATE DATABASE "{restored.database}" OWNER "{restored.username}"')
    admin.dispose()
    out = ok(
        deployment.flask(
            "backup",
            "restore",
            archive,
            env={
                "DATABASE_URL": restored.render_as_string(hide_password=False),
                "PM_INSTANCE_PATH": str(deployment.root / "restored-instance"),
            },
        )
    )
    assert "counts match the manifest" in out and "chain intact" in out
    with deployment.app().app_context():  # nothing the restore brought back differs from the source
        source = sorted(db.session.scalars(sa.select(Resident.id_number)))
        db.engine.dispose()
    engine = sa.create_engine(restored)
    with engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM resident")) == len(source)
    engine.dispose()


@pytest.mark.skipif(not databases.server_url(), reason="a deployment runs on PostgreSQL (the PostgreSQL pass runs it)")
def test_deploy_as_readme_says_in_production_with_the_least_privilege_role(deployment: Deployment) -> None:
    """The steps share one deployment, in README's order (one test: no worker can split them)."""
    step_deploy_upgrade_as_owner_then_grants_for_the_app_role(deployment)
    step_deploy_seed_departments_and_refuse_the_demo_in_production(deployment)
    step_acc_1_deploy_create_admin_from_the_cli(deployment)
    step_reg_1_deploy_import_units_and_residents(deployment)
    step_deploy_sweep_and_remind_from_cron(deployment)
    step_deploy_retention_purges_a_due_batch_as_the_app_role(deployment)
    step_cmp_7_deploy_statistics_weekly_to_a_file_outside_a_request(deployment)
    step_acc_7_deploy_audit_checkpoint_and_verify(deployment)
    step_acc_6_deploy_reencrypt_then_retire_the_old_key(deployment)
    step_deploy_backup_as_the_app_verify_and_restore_as_the_owner(deployment)
    assert deployment.ran == readme_commands() == STEPS


def test_deploy_readme_lists_the_deployment_steps_in_order() -> None:
    assert readme_commands() == STEPS


def readme_commands() -> list[str]:
    """The flask commands in README's code lines of "A real deployment", in order."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## A real deployment", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    found = []
    for line in section.splitlines():
        match = re.match(r"^ {4,}.*?\.venv/bin/flask --app app ((?:[a-z-]+)(?: [a-z-]+)?)", line)
        if match:
            words = match.group(1).split()
            found.append(" ".join(words if words[0] in GROUPS else words[:1]))
    return found
