"""Core `feepay` commands: init, units, users, accounts, fees, refs, keys, audit.

Thin shells over the services; each prints human text or, with ``--json``, one JSON
document with the keys documented in docs/cli.md.
"""

from __future__ import annotations

import sys

import click

from feepay import reference as refcodes
from feepay.banks import BANKS
from feepay.clikit import command, emit, json_option, local_time, parse_day
from feepay.money import format_date, format_vnd


@click.command()
@json_option
@command
def init(fp, as_json: bool) -> None:
    """Create or upgrade the database schema (safe to run again)."""
    fp.db.upgrade()
    rev = fp.db.current_revision()
    emit(as_json, {"database": fp.db.engine.url.render_as_string(hide_password=True),
                   "revision": rev}, f"database ready at revision {rev}")


# -- units --------------------------------------------------------------------------------
@click.group()
def units() -> None:
    """Administrative units (2025 codes): provinces, communes, departments."""


@units.command("import")
@click.option("--province", required=True, help="Province code, e.g. 40 (Nghệ An).")
@json_option
@command
def units_import(fp, province: str, as_json: bool) -> None:
    """Load a province and all its communes from the official 2025 list."""
    res = fp.units.import_province(province)
    emit(as_json, res, f"province {province}: {res['added']} units added "
                       f"({res['total']} in the official list)")


@units.command("add")
@click.option("--code", required=True)
@click.option("--name", default="")
@click.option("--kind", required=True,
              type=click.Choice(["province", "commune", "department", "other"]))
@click.option("--parent", default=None, help="Parent province code (departments).")
@json_option
@command
def units_add(fp, code: str, name: str, kind: str, parent: str | None, as_json: bool) -> None:
    """Add one unit; departments get codes like 40-STP under their province."""
    u = fp.units.add(code, name, kind, parent)
    emit(as_json, u.__dict__, f"unit {u.code} added: {u.name}")


@units.command("merge")
@click.argument("old_code")
@click.option("--into", "successor", required=True, help="Code of the successor unit.")
@click.option("--reason", default=None)
@json_option
@command
def units_merge(fp, old_code: str, successor: str, reason: str | None, as_json: bool) -> None:
    """Record that a unit was merged into a successor (its references route there)."""
    u = fp.units.merge(old_code, successor, reason=reason)
    emit(as_json, u.__dict__, f"unit {old_code} now succeeded by {successor}")


@units.command("list")
@click.option("--parent", default=None)
@click.option("--kind", default=None)
@json_option
@command
def units_list(fp, parent: str | None, kind: str | None, as_json: bool) -> None:
    """List units."""
    rows = fp.units.list(parent, kind)
    emit(as_json, [u.__dict__ for u in rows],
         lambda: "\n".join(f"{u.code:8} {u.kind:10} {u.name}" for u in rows) or "no units")


# -- users --------------------------------------------------------------------------------
@click.group()
def users() -> None:
    """People who sign in: admin, treasury and unit staff."""


@users.command("add")
@click.argument("username")
@click.option("--role", required=True, type=click.Choice(["admin", "treasury", "unit"]))
@click.option("--unit", default=None, help="Unit code (required for unit staff).")
@click.option("--name", "display_name", default="")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True,
              envvar="FEEPAY_NEW_PASSWORD", help="Prompted if not given.")
@json_option
@command
def users_add(fp, username: str, role: str, unit: str | None, display_name: str,
              password: str, as_json: bool) -> None:
    """Add a user (password hashed with scrypt)."""
    u = fp.users.add(username, password, role, unit_code=unit, display_name=display_name)
    emit(as_json, u.__dict__, f"user {u.username} ({u.role}) added")


@users.command("list")
@json_option
@command
def users_list(fp, as_json: bool) -> None:
    """List users."""
    rows = fp.users.list()
    emit(as_json, [u.__dict__ for u in rows],
         lambda: "\n".join(f"{u.username:20} {u.role:9} {u.unit_code or ''}" for u in rows))


# -- accounts -----------------------------------------------------------------------------
@click.group()
def accounts() -> None:
    """Collection accounts: register, verify (treasury), activate, retire."""


def _account_text(a) -> str:  # noqa: ANN001
    return (f"#{a.id} {a.unit_code} {a.bank_name} {a.number_masked} {a.holder_name} "
            f"[{'+'.join(a.fee_kinds)}] {a.state}")


@accounts.command("banks")
@json_option
def accounts_banks(as_json: bool) -> None:
    """The banks feepay knows (NAPAS BIN, name)."""
    data = [{"bin": b.bin, "short_name": b.short_name, "name": b.name} for b in BANKS.values()]
    emit(as_json, data, lambda: "\n".join(f"{b['bin']} {b['short_name']:12} {b['name']}"
                                          for b in data))


@accounts.command("register")
@click.option("--unit", required=True)
@click.option("--bank", "bank_bin", required=True, help="6-digit NAPAS BIN, e.g. 970415.")
@click.option("--number", required=True, help="Account number (digits).")
@click.option("--holder", required=True, help="Account holder name.")
@click.option("--fee-kinds", default="both", help="phi, le_phi or both.")
@click.option("--valid-from", default=None)
@click.option("--valid-to", default=None)
@click.option("--cutoff", default="23:59", help="Local posting cut-off HH:MM.")
@json_option
@command
def accounts_register(fp, unit, bank_bin, number, holder, fee_kinds, valid_from, valid_to,
                      cutoff, as_json) -> None:  # noqa: ANN001
    """Register a collection account (state: pending)."""
    a = fp.accounts.register(unit, bank_bin, number, holder, fee_kinds,
                             parse_day(valid_from, "valid_from"), parse_day(valid_to, "valid_to"),
                             cutoff)
    emit(as_json, a.as_dict(), f"registered {_account_text(a)}")


def _move_command(name: str, doc: str):  # noqa: ANN202
    @accounts.command(name, help=doc)
    @click.argument("account_id", type=int)
    @click.option("--by", "actor", default="system", help="Acting user.")
    @click.option("--reason", default=None)
    @json_option
    @command
    def move(fp, account_id: int, actor: str, reason: str | None, as_json: bool) -> None:
        if name == "verify":
            a = fp.accounts.verify(account_id, by=actor)
        elif name == "activate":
            a = fp.accounts.activate(account_id, actor)
        else:
            a = fp.accounts.retire(account_id, actor, reason)
        emit(as_json, a.as_dict(), _account_text(a))

    return move


_move_command("verify", "Confirm an account (a treasury user, --by USERNAME).")
_move_command("activate", "Open a verified account for new references.")
_move_command("retire", "Stop using an account for new references.")


@accounts.command("list")
@click.option("--unit", default=None)
@click.option("--state", default=None)
@json_option
@command
def accounts_list(fp, unit: str | None, state: str | None, as_json: bool) -> None:
    """List accounts (numbers masked)."""
    rows = fp.accounts.list(unit, state)
    emit(as_json, [a.as_dict() for a in rows],
         lambda: "\n".join(_account_text(a) for a in rows) or "no accounts")


# -- fees ---------------------------------------------------------------------------------
@click.group()
def fees() -> None:
    """Fee items per procedure (mã TTHC)."""


@fees.command("add")
@click.option("--procedure", required=True, help="Procedure code, e.g. 1.001612.")
@click.option("--code", "fee_code", required=True)
@click.option("--name", required=True)
@click.option("--kind", required=True, type=click.Choice(["phi", "le_phi"]))
@click.option("--amount", required=True, help="VND, e.g. 50000 or 50.000.")
@click.option("--retention", default=None, help="Share kept by the unit for phí, e.g. 90%.")
@click.option("--from", "effective_from", default=None)
@click.option("--to", "effective_to", default=None)
@json_option
@command
def fees_add(fp, procedure, fee_code, name, kind, amount, retention, effective_from,
             effective_to, as_json) -> None:  # noqa: ANN001
    """Add a fee item."""
    f = fp.fees.add(procedure, fee_code, name, kind, amount, retention,
                    parse_day(effective_from, "effective_from"),
                    parse_day(effective_to, "effective_to"))
    emit(as_json, f.as_dict(), f"fee {f.fee_code}: {format_vnd(f.amount)} ({f.kind})")


@fees.command("list")
@click.option("--procedure", default=None)
@json_option
@command
def fees_list(fp, procedure: str | None, as_json: bool) -> None:
    """List fee items."""
    rows = fp.fees.list(procedure)
    emit(as_json, [f.as_dict() for f in rows], lambda: "\n".join(
        f"{f.procedure_code} {f.fee_code:10} {f.kind:6} {format_vnd(f.amount):>12} "
        f"{f.retention_bp / 100:g}% {format_date(f.effective_from)} {f.name}" for f in rows))


# -- refs ---------------------------------------------------------------------------------
@click.group()
def refs() -> None:
    """Payment references: issue, show, cancel, find in a memo."""


def ref_dict(r) -> dict[str, object]:  # noqa: ANN001
    d = r.model_dump(mode="json")
    d["display_code"] = r.display_code
    return d


def ref_text(r) -> str:  # noqa: ANN001
    lines = [f"Mã thanh toán / reference: {r.display_code}  ({r.state.value})",
             f"  hồ sơ {r.dossier_code} · đơn vị {r.competent_unit} · "
             f"{format_vnd(r.amount_due)} · hạn {format_date(r.expires_at)}",
             f"  tài khoản {r.bank_bin} {r.account_masked} {r.account_holder}",
             f"  nội dung CK / memo: {r.memo}",
             f"  VietQR: {r.vietqr}"]
    return "\n".join(lines)


@refs.command("issue")
@click.option("--dossier", required=True)
@click.option("--unit", required=True, help="Competent unit code.")
@click.option("--item", "items", multiple=True, required=True, help="Fee code (repeatable).")
@click.option("--receiving-unit", default=None)
@click.option("--qr", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write the QR image here (.svg or .png).")
@json_option
@command
def refs_issue(fp, dossier, unit, items, receiving_unit, qr, as_json) -> None:  # noqa: ANN001
    """Issue (or return the existing) reference for a dossier."""
    r = fp.references.issue(dossier, unit, list(items), receiving_unit)
    if qr:
        with open(qr, "wb") as fh:
            fh.write(r.qr_png() if qr.lower().endswith(".png") else r.qr_svg().encode())
    emit(as_json, ref_dict(r), lambda: ref_text(r))


@refs.command("show")
@click.argument("code")
@json_option
@command
def refs_show(fp, code: str, as_json: bool) -> None:
    """Show a reference."""
    r = fp.references.get(code)
    emit(as_json, ref_dict(r), lambda: ref_text(r))


@refs.command("cancel")
@click.argument("code")
@click.option("--reason", required=True)
@click.option("--by", "actor", default="system")
@json_option
@command
def refs_cancel(fp, code: str, reason: str, actor: str, as_json: bool) -> None:
    """Cancel an unpaid reference."""
    r = fp.references.cancel(code, reason, actor)
    emit(as_json, ref_dict(r), f"cancelled {r.display_code}")


@refs.command("find")
@click.argument("memo", required=False)
@json_option
def refs_find(memo: str | None, as_json: bool) -> None:
    """Find reference codes in a memo (or in each line of stdin)."""
    texts = [memo] if memo is not None else [line.rstrip("\n") for line in sys.stdin]
    data = [{"memo": t, "codes": refcodes.find_in_text(t)} for t in texts]
    emit(as_json, data, lambda: "\n".join(" ".join(d["codes"]) or "-" for d in data))


# -- keys ---------------------------------------------------------------------------------
@click.group()
def keys() -> None:
    """Encryption keys for secrets at rest."""


@keys.command("generate")
def keys_generate() -> None:
    """Print a new Fernet key (put it first in FEEPAY_SECRET_KEYS)."""
    from feepay.crypto import generate_key

    click.echo(generate_key())


@keys.command("rotate")
@json_option
@command
def keys_rotate(fp, as_json: bool) -> None:
    """Re-encrypt every sealed value with the first key in FEEPAY_SECRET_KEYS (and seal
    credential headers that inbox rows from before migration 0005 keep in clear)."""
    from feepay.crypto import rotate_all
    from feepay.inbox import seal_clear_headers

    sealed = seal_clear_headers(fp)
    counts = rotate_all(fp)
    counts["callback_inbox.headers sealed (were clear)"] = sealed
    emit(as_json, counts, "\n".join(f"{k}: {v}" for k, v in counts.items()))


# -- audit --------------------------------------------------------------------------------
@click.group()
def audit() -> None:
    """The hash-chained audit log."""


@audit.command("verify")
@click.option("--anchor", default=None, metavar="HASH",
              help="a head an earlier verify printed: it must still be in the chain "
                   "(shows entries cut off the end)")
@json_option
@command
def audit_verify(fp, anchor: str | None, as_json: bool) -> None:
    """Check the whole chain; name the first broken entry (exit 1 if broken).

    Prints the chain's head: keep it outside this database and pass it back with
    --anchor, so that entries removed from the end are noticed too."""
    rep = fp.audit.verify(anchor.strip().lower() if anchor else None)
    where = f"entry #{rep.first_broken_id}" if rep.first_broken_id else "its end"
    emit(as_json, rep.__dict__,
         f"audit chain intact: {rep.entries} entries, head {rep.head}" if rep.ok else
         f"audit chain BROKEN at {where}: {rep.reason}")
    if not rep.ok:
        sys.exit(1)


@audit.command("list")
@click.option("--object-type", default=None)
@click.option("--object-id", default=None)
@json_option
@command
def audit_list(fp, object_type: str | None, object_id: str | None, as_json: bool) -> None:
    """List audit entries."""
    rows = fp.audit.entries(object_type, object_id)
    emit(as_json, rows, lambda: "\n".join(
        f"#{r['id']} {local_time(r['at'])} {r['actor']} {r['action']} {r['object_type']}:"
        f"{r['object_id']} {r['reason'] or ''}" for r in rows))


commands: list[click.Command] = [init, units, users, accounts, fees, refs, keys, audit]
