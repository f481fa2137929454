"""The audit trail's CLI and its checkpoints outside the database (``flask audit ...``).

The signed head (models/audit.py) catches a trail cut short or wiped, but not a head rolled back
to an older tip together with that tip's old, valid signature (read from a backup, say). So
``flask audit checkpoint``, run from cron, appends the signed tip to a file the database cannot
reach (JSON lines: seq, hash, time, HMAC), and ``flask audit verify --checkpoints FILE`` proves
that every checkpointed row is still in the chain with the same hash. Retention's redaction keeps
every row's hash, so a purge never breaks a checkpoint.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from pathlib import Path

import click
import sqlalchemy as sa
from flask import Flask, current_app
from flask.cli import AppGroup

from models.audit import GENESIS, AuditEntry, AuditHead, head_signature
from models.base import db, utcnow
from workflow.audit import Problem, audit_key, audit_keys, verify

DEFAULT_FILE = "audit-checkpoints.jsonl"  # under instance/, in development only


@dataclass(frozen=True)
class Tip:
    seq: int
    hash: str


def checkpoint_signature(key: bytes, seq: int, row_hash: str, at: str) -> str:
    canonical = json.dumps(["checkpoint", seq, row_hash, at], separators=(",", ":"))
    return hmac.new(key, canonical.encode(), hashlib.sha256).hexdigest()


def checkpoint_file() -> Path | None:
    """``AUDIT_CHECKPOINT_FILE``; in development a file under instance/. Production must name one,
    ideally on another machine's mount: a file beside the database is lost or edited with it."""
    configured = current_app.config.get("AUDIT_CHECKPOINT_FILE")
    if configured:
        return Path(configured)
    if current_app.config.get("PM_ENV") == "production":
        return None
    return Path(current_app.instance_path) / DEFAULT_FILE


def signed_tip(bind: sa.Engine) -> Tip | str:
    """The head, when its signature is the key's and the last row is where it says; else why not.

    Cheap on purpose (two indexed reads, hourly): ``verify`` is the full walk of the chain.
    """
    with bind.connect() as conn:
        head = conn.execute(sa.select(AuditHead.seq, AuditHead.last_hash, AuditHead.signature)
                            .where(AuditHead.id == 1)).first()
        if head is None:
            return "the chain's head row is missing"
        if not any(hmac.compare_digest(head_signature(k, head.seq, head.last_hash), head.signature or "")
                   for k in audit_keys()):
            return "the head's signature is missing or invalid"
        if _hashes(conn, [head.seq]).get(head.seq) != head.last_hash:
            return f"row {head.seq}, the recorded tip, is missing or differs"
    return Tip(head.seq, head.last_hash)


def _hashes(conn: sa.Connection, seqs: list[int]) -> dict[int, str]:
    """Row hash by seq; seq 0 is the genesis every chain starts from."""
    found = {0: GENESIS} if 0 in seqs else {}
    wanted = sorted({s for s in seqs if s > 0})
    for start in range(0, len(wanted), 1000):
        found.update((seq, row_hash) for seq, row_hash in conn.execute(
            sa.select(AuditEntry.seq, AuditEntry.hash).where(AuditEntry.seq.in_(wanted[start:start + 1000]))))
    return found


def write_checkpoint(path: Path, tip: Tip) -> dict[str, object]:
    """Append one signed line and flush it to disk before reporting success."""
    at = utcnow().isoformat()
    line = {"seq": tip.seq, "hash": tip.hash, "at": at,
            "hmac": checkpoint_signature(audit_key(), tip.seq, tip.hash, at)}
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as out:
        out.write(json.dumps(line, separators=(",", ":")) + "\n")
        out.flush()
        os.fsync(out.fileno())
    return line


def check_checkpoints(bind: sa.Engine, path: Path) -> tuple[int, list[Problem]]:
    """Every line signed with the key, its row still in the chain with its hash, and the head at
    or past it. Returns how many checkpoints were read and what is wrong."""
    keys, problems, lines = audit_keys(), [], []
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not text.strip():
            continue
        try:
            line = json.loads(text)
            seq, row_hash, at, mac = int(line["seq"]), str(line["hash"]), str(line["at"]), str(line["hmac"])
        except (ValueError, TypeError, KeyError):
            problems.append(Problem(None, "checkpoint", f"line {number} of {path} is not a checkpoint"))
            continue
        if not any(hmac.compare_digest(checkpoint_signature(k, seq, row_hash, at), mac) for k in keys):
            problems.append(Problem(seq, "checkpoint", f"line {number}: the signature is invalid"
                                                       " (edited, or written with another AUDIT_KEY)"))
            continue
        lines.append((number, seq, row_hash))
    if not lines and not problems:
        problems.append(Problem(None, "checkpoint", f"{path} holds no checkpoint"))
    with bind.connect() as conn:
        head_seq = conn.scalar(sa.select(AuditHead.seq).where(AuditHead.id == 1))
        hashes = _hashes(conn, [seq for _, seq, _ in lines])
    for number, seq, row_hash in lines:
        if head_seq is not None and head_seq < seq:  # a missing head is verify's to report
            problems.append(Problem(seq, "checkpoint", f"line {number}: row {seq} was checkpointed but the head"
                                                       f" is at {head_seq}: the trail was rolled back"))
        if seq not in hashes:
            problems.append(Problem(seq, "checkpoint", f"line {number}: checkpointed row {seq} is missing"))
        elif hashes[seq] != row_hash:
            problems.append(Problem(seq, "checkpoint", f"line {number}: row {seq} no longer has its"
                                                       " checkpointed hash"))
    return len(lines), problems


audit_cli = AppGroup("audit", help="The audit trail.")


@audit_cli.command("verify")
@click.option("--checkpoints", type=click.Path(dir_okay=False, path_type=Path),
              help="Also prove that no row checkpointed in this file (flask audit checkpoint) was lost.")
def verify_command(checkpoints: Path | None) -> None:
    """Check the hash chain and its signed head; exit status 1 when any row was edited, removed or
    reordered, the trail was cut short or wiped, or (with --checkpoints) a checkpointed row is gone."""
    count, problems = verify(db.engine)
    checked = 0
    if checkpoints is not None:
        if checkpoints.is_file():
            checked, more = check_checkpoints(db.engine, checkpoints)
            problems += more
        else:
            problems.append(Problem(None, "checkpoint", f"no checkpoint file at {checkpoints}"))
    for problem in problems:
        click.echo(str(problem), err=True)
    if problems:
        click.echo(f"audit trail: {count} rows, {len(problems)} problem(s)", err=True)
        raise SystemExit(1)
    click.echo(f"audit trail: {count} rows, chain intact")
    if checkpoints is not None:
        click.echo(f"checkpoints: {checked} checked, every checkpointed row present")


@audit_cli.command("checkpoint")
def checkpoint_command() -> None:
    """Append the chain's signed tip to AUDIT_CHECKPOINT_FILE (outside the database; from cron)."""
    path = checkpoint_file()
    if path is None:
        click.echo("AUDIT_CHECKPOINT_FILE is not set: name a file outside the database", err=True)
        raise SystemExit(1)
    tip = signed_tip(db.engine)
    if isinstance(tip, str):
        click.echo(f"no checkpoint written: {tip}; run `flask audit verify`", err=True)
        raise SystemExit(1)
    write_checkpoint(path, tip)
    click.echo(f"checkpoint: row {tip.seq} appended to {path}")


def init_app(app: Flask) -> None:
    app.cli.add_command(audit_cli)
