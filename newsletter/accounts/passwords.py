"""Editors' passwords: argon2id through pwdlib, never stored or logged in clear."""

from __future__ import annotations

from functools import cache

from pwdlib import PasswordHash

from newsletter.errors import AccountError

MIN_LENGTH = 12
# Argon2 reads the whole input: a megabyte "password" would be a cheap way to burn CPU.
MAX_LENGTH = 256


@cache
def _hasher() -> PasswordHash:
    return PasswordHash.recommended()  # argon2id with pwdlib's current parameters


@cache
def _decoy() -> str:
    return _hasher().hash("a decoy that no account has, for constant-time refusals")


def check_strength(password: str) -> None:
    """Refuse a password too short to stand an offline guess, or too long to hash cheaply."""
    if len(password) < MIN_LENGTH:
        raise AccountError(f"the password must have at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise AccountError(f"the password must have at most {MAX_LENGTH} characters")


def hash_password(password: str) -> str:
    check_strength(password)
    return _hasher().hash(password)


def verify(password: str, hashed: str | None) -> bool:
    """True when ``password`` matches; with no hash (no such account) it still costs one
    argon2 verification, so the answer's timing tells nobody whether the account exists."""
    if len(password) > MAX_LENGTH:
        return False
    if hashed is None:
        _hasher().verify(password, _decoy())
        return False
    return _hasher().verify(password, hashed)
