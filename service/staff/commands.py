"""`chapar staff ...`: the first admin, and staff accounts from the command line."""

from __future__ import annotations

import sys

import click

from service.clock import utcnow
from service.db import unit_of_work
from service.runtime import Runtime
from service.settings import Settings
from service.staff import accounts
from service.staff.audit import CLI
from service.staff.passwords import WeakPassword
from service.staff.permissions import ROLES, UnknownRole
from service.subscribers.addresses import AddressError


@click.group()
def staff() -> None:
    """Staff accounts for the desk at /desk/."""


@staff.command("create")
@click.argument("email")
@click.option("--role", required=True, type=click.Choice(list(ROLES)), help="What the account may do.")
@click.option("--name", default="", help="The name shown on the desk.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def create_staff(email: str, role: str, name: str, password_stdin: bool) -> None:
    """Create a staff account that can sign in at once."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    rt = Runtime.from_settings(Settings())
    try:
        with unit_of_work(rt.sessions) as session:
            account = accounts.create(session, CLI, email, role, password, utcnow(), name=name)
            address = account.email
    except AddressError as exc:
        raise click.ClickException(f"{email!r}: {exc.code}") from exc
    except (accounts.AccountError, WeakPassword, UnknownRole) as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        rt.close()
    click.echo(f"created {role} {address}; sign in at {rt.url('/desk/login')}")


@staff.command("list")
def list_staff() -> None:
    """Every staff account: address, role, state."""
    rt = Runtime.from_settings(Settings())
    try:
        with rt.sessions() as session:
            for account in accounts.all_accounts(session):
                if not account.active:
                    state = "disabled"
                elif account.password_hash is None:
                    state = "invited"
                else:
                    state = "active"
                totp = " totp" if account.totp_secret else ""
                click.echo(f"{account.email}\t{account.role}\t{state}{totp}\t{account.name}")
    finally:
        rt.close()


@staff.command("disable")
@click.argument("email")
def disable_staff(email: str) -> None:
    """Disable an account and end its sessions."""
    rt = Runtime.from_settings(Settings())
    try:
        with unit_of_work(rt.sessions) as session:
            account = accounts.find(session, email)
            if account is None:
                raise click.ClickException(f"no staff account for {email}")
            changed = accounts.disable(session, CLI, account, utcnow())
    except accounts.AccountError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        rt.close()
    click.echo(f"disabled {email}" if changed else f"{email} was already disabled")
