"""National ID numbers: encrypted at rest, blind-indexed for search, masked, rotatable keys (ACC-6)."""

from __future__ import annotations

import base64
import os

import pytest
import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from flask import Flask
from sqlalchemy.orm.attributes import flag_modified

from models import Resident, SecurityEvent, db
from security.crypto import EncryptedString, KeyRing, keyring, mask
from tests.conftest import PASSWORD, csrf_token
from tests.helpers import make_resident, valid_id


def b64key(raw: bytes | None = None) -> str:
    return base64.urlsafe_b64encode(raw or os.urandom(32)).decode().rstrip("=")


def raw_resident(app: Flask, resident_id: int) -> tuple[str | None, str | None]:
    with app.app_context():
        row = db.session.execute(sa.text("SELECT id_number, id_number_bidx FROM resident WHERE id = :i"),
                                 {"i": resident_id}).one()
        return row[0], row[1]


def add_resident(app: Flask, **values: object) -> int:
    with app.app_context():
        resident = make_resident(**values)
        db.session.commit()
        return resident.id


# --- at rest ---------------------------------------------------------------------------------------------


def test_acc_6_id_number_stored_encrypted(app, staff_ids):
    number = valid_id(7)
    rid = add_resident(app, id_number=number)
    stored, bidx = raw_resident(app, rid)
    key_id = app.config["FIELD_ENCRYPTION_KEYS"].split(":", 1)[0]
    assert stored.startswith(f"{key_id}:")
    assert number not in stored and number[6:14] not in stored and number[-4:] not in stored
    assert bidx and number not in bidx and len(bidx) == 64


def test_acc_6_id_number_decrypts_through_model(app, staff_ids):
    number = valid_id(8)
    rid = add_resident(app, id_number=number)
    with app.app_context():
        assert db.session.get(Resident, rid).id_number == number


def test_acc_6_same_number_encrypts_differently(app):
    with app.app_context():
        ring = keyring()
        first, second = ring.encrypt("110105198001010011"), ring.encrypt("110105198001010011")
    assert first != second  # random nonce: equal numbers are not visible as equal ciphertexts


def test_acc_6_blank_id_number_is_null(app, staff_ids):
    rid = add_resident(app, id_number=None)
    assert raw_resident(app, rid) == (None, None)
    with app.app_context():
        assert EncryptedString().process_bind_param("", None) is None


def test_acc_6_tampered_ciphertext_refused(app, staff_ids):
    rid = add_resident(app, id_number=valid_id(9))
    stored, _bidx = raw_resident(app, rid)
    key_id, _, payload = stored.partition(":")
    raw = bytearray(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    raw[-1] ^= 1
    with app.app_context():
        with pytest.raises(InvalidTag):
            keyring().decrypt(f"{key_id}:" + base64.urlsafe_b64encode(bytes(raw)).decode())


# --- search through the blind index ------------------------------------------------------------------------


def test_acc_6_search_by_exact_id_through_blind_index(app, login_as):
    wanted, other = valid_id(11), valid_id(12)
    add_resident(app, name="赵一", phone="13800000001", id_number=wanted)
    add_resident(app, name="钱二", phone="13800000002", id_number=other)
    client = login_as("cs_supervisor")  # ACC-6: a role that may see full numbers
    html = client.get("/admin/resident/", query_string={"search": wanted}).get_data(as_text=True)
    assert "赵一" in html and "钱二" not in html
    assert mask(wanted) in html
    html = client.get("/admin/resident/", query_string={"search": wanted.lower()}).get_data(as_text=True)
    assert "赵一" in html
    # A part of the number finds nothing: there is no plaintext to compare against.
    html = client.get("/admin/resident/", query_string={"search": wanted[:10]}).get_data(as_text=True)
    assert "赵一" not in html and "钱二" not in html
    # Ordinary search by name still works.
    html = client.get("/admin/resident/", query_string={"search": "钱二"}).get_data(as_text=True)
    assert "钱二" in html and "赵一" not in html


def test_acc_6_list_shows_masked_id_only(app, login_as):
    number = valid_id(18)
    add_resident(app, name="褚十", id_number=number)
    for role in ("cs_clerk", "cs_supervisor", "manager"):
        html = login_as(role).get("/admin/resident/").get_data(as_text=True)
        assert "褚十" in html and mask(number) in html, role
        assert number not in html, role


def test_acc_6_search_unknown_id_finds_nothing(app, login_as):
    add_resident(app, name="孙三", id_number=valid_id(13))
    html = login_as("cs_supervisor").get("/admin/resident/", query_string={"search": valid_id(14)}).get_data(
        as_text=True)
    assert "孙三" not in html


def test_acc_6_blind_index_is_keyed_and_normalised(app):
    a = KeyRing("k1:" + b64key(), "blind-one")
    b = KeyRing("k1:" + b64key(), "blind-two")
    number = "11010519800101001X"
    assert a.blind_index(number) == a.blind_index(number.lower()) == a.blind_index(f" {number} ")
    assert a.blind_index(number) != b.blind_index(number)


def test_acc_6_duplicate_id_number_refused(app, staff_ids):
    number = valid_id(15)
    add_resident(app, name="周四", id_number=number)
    with app.app_context():
        db.session.add(Resident(name="吴五", phone="13800000005", id_number=number))
        with pytest.raises(sa.exc.IntegrityError):
            db.session.commit()
        db.session.rollback()


# --- masking ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "masked"), [
    ("110105198001010011", "110***********0011"),
    ("11010519800101001X", "110***********001X"),
    ("1234567", "*******"),
    ("12345678", "123*5678"),
    ("", ""),
    (None, ""),
])
def test_acc_6_mask(value, masked):
    assert mask(value) == masked


def test_acc_6_mask_keeps_length_and_hides_birth_date():
    number = "110105198001010011"
    out = mask(number)
    assert len(out) == len(number) and "19800101" not in out


def test_acc_6_details_masked_for_clerk_full_for_supervisor_and_logged(app, login_as, staff_ids):
    number = valid_id(16)
    rid = add_resident(app, name="郑六", id_number=number)
    clerk_html = login_as("cs_clerk").get(f"/admin/resident/details/?id={rid}").get_data(as_text=True)
    assert "郑六" in clerk_html and number not in clerk_html and mask(number) in clerk_html
    sup_html = login_as("cs_supervisor").get(f"/admin/resident/details/?id={rid}").get_data(as_text=True)
    assert number in sup_html
    with app.app_context():
        views = db.session.scalars(sa.select(SecurityEvent).where(SecurityEvent.kind == "confidential_view")).all()
        assert {(v.staff_id, v.detail) for v in views} == {(staff_ids["cs_clerk"], f"resident {rid}"),
                                                          (staff_ids["cs_supervisor"], f"resident {rid}")}


def test_acc_6_export_masks_id_number(app, login_as):
    number = valid_id(17)
    add_resident(app, name="王七", id_number=number)
    client = login_as("cs_supervisor")
    first = client.get("/admin/resident/export/csv/")
    assert first.status_code == 302  # ACC-5: the export needs the password again
    confirm = client.post(first.headers["Location"], data={"csrf_token": csrf_token(client), "password": PASSWORD})
    assert confirm.status_code == 302
    response = client.get("/admin/resident/export/csv/")
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert "王七" in body and number not in body and mask(number) in body


# --- key rotation ------------------------------------------------------------------------------------------


def test_acc_6_keyring_rotation_old_rows_decrypt_new_writes_use_new_key():
    old_key, new_key = b64key(), b64key()
    old = KeyRing(f"k1:{old_key}", "blind")
    stored_old = old.encrypt("110105198001010011")
    assert stored_old.startswith("k1:")

    rotated = KeyRing(f"k2:{new_key},k1:{old_key}", "blind")
    assert rotated.primary == "k2"
    assert rotated.decrypt(stored_old) == "110105198001010011"
    stored_new = rotated.encrypt("11010519800101001X")
    assert stored_new.startswith("k2:")
    assert rotated.decrypt(stored_new) == "11010519800101001X"
    # The old ring cannot read what the new key wrote; the blind index does not change with rotation.
    with pytest.raises(KeyError):
        old.decrypt(stored_new)
    assert old.blind_index("110105198001010011") == rotated.blind_index("110105198001010011")


def test_acc_6_keyring_key_id_is_authenticated():
    """A ciphertext relabelled with another key id does not decrypt."""
    key = b64key()
    ring = KeyRing(f"k2:{key},k1:{key}", "blind")
    stored = ring.encrypt("110105198001010011")
    with pytest.raises(InvalidTag):
        ring.decrypt("k1:" + stored.partition(":")[2])


@pytest.mark.parametrize("spec", ["", " , ", "k1:" + b64key(b"short"), ":" + b64key(b"k" * 32)])
def test_acc_6_keyring_refuses_bad_keys(spec):
    with pytest.raises(ValueError):
        KeyRing(spec, "blind")


def test_acc_6_rotation_in_the_app(app, staff_ids, monkeypatch):
    number, second = valid_id(21), valid_id(22)
    rid = add_resident(app, name="冯八", id_number=number)
    old_spec = app.config["FIELD_ENCRYPTION_KEYS"]
    monkeypatch.setitem(app.config, "FIELD_ENCRYPTION_KEYS", f"r2:{b64key()},{old_spec}")
    monkeypatch.delitem(app.extensions, "pm_keyring", raising=False)
    with app.app_context():
        resident = db.session.get(Resident, rid)
        assert resident.id_number == number  # old row, old key
        other = make_resident(name="陈九", phone="13800000009", id_number=second)
        db.session.commit()
        other_id = other.id
    assert raw_resident(app, other_id)[0].startswith("r2:")
    assert raw_resident(app, rid)[0].startswith(old_spec.split(":", 1)[0] + ":")
    # Re-saving the old row moves it to the new key; the blind index keeps search working.
    with app.app_context():
        resident = db.session.get(Resident, rid)
        resident.id_number = number
        flag_modified(resident, "id_number")  # same value: force the re-encrypting write
        db.session.commit()
    stored, bidx = raw_resident(app, rid)
    assert stored.startswith("r2:")
    with app.app_context():
        assert db.session.get(Resident, rid).id_number == number
        assert db.session.scalar(sa.select(Resident.id).where(Resident.id_number_bidx == bidx)) == rid


# --- issue 18 §6: retiring a key --------------------------------------------------------------------------
def rotate(app: Flask, monkeypatch, spec: str) -> None:
    monkeypatch.setitem(app.config, "FIELD_ENCRYPTION_KEYS", spec)
    monkeypatch.delitem(app.extensions, "pm_keyring", raising=False)


def test_acc_6_reencrypt_in_batches_then_the_old_key_retires(app, staff_ids, monkeypatch):
    from models import AuditEntry
    from workflow.audit import verify

    ids = [add_resident(app, name=f"住户{i}", phone=f"1380000001{i}", id_number=valid_id(30 + i)) for i in range(3)]
    old_spec = app.config["FIELD_ENCRYPTION_KEYS"]
    old_id = old_spec.split(":", 1)[0]
    new_spec = f"r9:{b64key()}"
    rotate(app, monkeypatch, new_spec)  # the old key dropped before re-encrypting: a clear error, naming it
    early = app.test_cli_runner().invoke(args=["keys", "reencrypt"])
    assert early.exit_code == 1 and f"FIELD_ENCRYPTION_KEYS has no key '{old_id}'" in early.output
    rotate(app, monkeypatch, f"{new_spec},{old_spec}")
    done = app.test_cli_runner().invoke(args=["keys", "reencrypt", "--batch", "2"])
    assert done.exit_code == 0 and "re-encrypted 3 value(s) with r9; no value uses another key" in done.output
    assert all(raw_resident(app, i)[0].startswith("r9:") for i in ids)
    again = app.test_cli_runner().invoke(args=["keys", "reencrypt"])  # resumable: nothing left, nothing redone
    assert "re-encrypted 0 value(s)" in again.output
    rotate(app, monkeypatch, new_spec)  # retired
    status = app.test_cli_runner().invoke(args=["keys", "status"])
    assert "resident.id_number: r9: 3" in status.output and old_id not in status.output.split("encrypting key")[0]
    with app.app_context():
        assert [db.session.get(Resident, i).id_number for i in ids] == [valid_id(30 + i) for i in range(3)]
        batches = db.session.scalars(sa.select(AuditEntry.record_type).where(AuditEntry.action == "reencrypt")).all()
        assert batches == ["resident", "resident"]  # batches of 2: one audit event each
        assert verify(db.engine)[1] == []


def test_acc_6_blind_index_rebuilt_after_rotating_blind_index_key(app, staff_ids, monkeypatch):
    number = valid_id(41)
    rid = add_resident(app, name="韩十", phone="13800000041", id_number=number)
    monkeypatch.setitem(app.config, "BLIND_INDEX_KEY", "a-new-blind-index-key-rotated-2026")
    monkeypatch.delitem(app.extensions, "pm_keyring", raising=False)
    with app.app_context():
        fresh = keyring().blind_index(number)
    assert raw_resident(app, rid)[1] != fresh  # search by the number finds nothing until rebuilt
    result = app.test_cli_runner().invoke(args=["keys", "rebuild-blind-index"])
    assert result.exit_code == 0 and "blind index: 1 resident(s) updated" in result.output
    assert raw_resident(app, rid)[1] == fresh
