"""What ``web``, ``worker``, ``beat`` and ``run`` check before they start.

A deployment (a BASE_URL that is not loopback) must not run on a secret anyone can read in
our docs or compose file: with the default SECRET_KEY a stranger signs unsubscribe and
preferences links for any reader; with a guessable ADMIN_TOKEN they publish to every
inbox; with the documented HASH_KEY a list of addresses reverses the suppression list.
On loopback (a laptop, ``newsletter demo``) the defaults stay: nothing outside the machine
can reach the links.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from newsletter import i18n
from newsletter.config import DEV_HASH_KEY, DEV_SECRET_KEY, Settings, get_settings
from newsletter.errors import UnsafeSettings  # noqa: F401 - re-exported

MIN_SECRET_LENGTH = 32
# Every value we have ever printed as an example: docs, compose, the development key.
DOCUMENTED_DEFAULTS = frozenset({DEV_SECRET_KEY, DEV_HASH_KEY, "change-me-in-production",
                                 "change-me-too"})
# Secrets that may be left unset: an unset ADMIN_TOKEN closes the admin API, an unset
# METRICS_TOKEN leaves /metrics to the admin token. A set one must be strong.
OPTIONAL_SECRETS = ("admin_token", "metrics_token")
HOW = "set it to 32+ random characters, e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


def is_loopback(base_url: str) -> bool:
    """True when BASE_URL names this machine only (localhost, 127.0.0.0/8, ::1)."""
    try:
        host = (urlsplit(base_url).hostname or "").lower()
    except ValueError:
        return False
    if host == "localhost" or host.endswith(".localhost"):  # RFC 6761: always loopback
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def checked_secrets(settings: Settings) -> list[tuple[str, str]]:
    """(setting, value) for every secret to judge: each signing key, the key of the address
    fingerprints (with the documented one, a list of addresses reverses them), and each
    optional secret that is set."""
    keys = settings.signing_keys
    pairs = ([(f"SECRET_KEYS (key {n} of {len(keys)}, newest first)", key)
              for n, key in enumerate(keys, 1)] if settings.secret_keys
             else [("SECRET_KEY", keys[0])])
    pairs.append(("HASH_KEY", settings.hash_key))
    for name in OPTIONAL_SECRETS:
        value = getattr(settings, name, "")
        if value:
            pairs.append((name.upper(), value))
    return pairs


def weakness(value: str) -> str | None:
    """Why ``value`` is no secret, or None."""
    if value.strip() in DOCUMENTED_DEFAULTS:
        return "is a documented default"
    if len(value) < MIN_SECRET_LENGTH:
        return f"is shorter than {MIN_SECRET_LENGTH} characters"
    return None


def problems(settings: Settings) -> list[str]:
    """Every reason these settings must not start; empty when they may."""
    found = []
    if settings._secret_key_outside_keys:
        found.append("NEWSLETTER_SECRET_KEY is set but is not one of NEWSLETTER_SECRET_KEYS: "
                     "links signed with it would stop working. Put it in SECRET_KEYS (newest "
                     "first) and unset SECRET_KEY")
    found += _smtp_problems(settings)
    if missing := i18n.without_catalogue(settings.languages):
        found.append(f"NEWSLETTER_LANGUAGES names {', '.join(missing)}, for which "
                     f"newsletter/locale/ has no compiled catalogue (docs/operations.md, "
                     f"\"Adding a language\")")
    if is_loopback(settings.base_url):
        return found
    for name, value in checked_secrets(settings):
        why = weakness(value)
        if why:  # never the value itself: this goes to logs
            found.append(f"NEWSLETTER_{name} {why}, and NEWSLETTER_BASE_URL "
                         f"({settings.base_url}) is not a loopback address: {HOW}")
    return found


def _smtp_problems(settings: Settings) -> list[str]:
    from newsletter.mail.mailer import SmtpConfig

    try:
        SmtpConfig.from_url(settings.smtp)
    except ValueError as exc:
        return [f"NEWSLETTER_SMTP_URL: {exc}"]
    return []


def check(settings: Settings | None = None) -> None:
    """Raise UnsafeSettings naming every problem (what web, worker and beat call first)."""
    found = problems(settings or get_settings())
    if found:
        raise UnsafeSettings("refusing to start:\n  - " + "\n  - ".join(found))
