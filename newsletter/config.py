"""Settings from ``NEWSLETTER_*`` environment variables — the only place that reads the env.

Every setting has a default that needs no server: SQLite and Celery's filesystem broker
under ``./var/``. ``demo`` and ``run`` start a local capture SMTP server themselves.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, PrivateAttr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Used only when NEWSLETTER_SECRET_KEY is unset: good enough for a laptop demo, and the
# web process logs a warning so nobody runs production on it unknowingly. Behind a public
# BASE_URL, web, worker and beat refuse to start on it (newsletter.cli.preflight).
DEV_SECRET_KEY = "dev-only-secret-change-me"
# The key of the address fingerprints (suppressions, consent ledger, bounce reports) when
# NEWSLETTER_HASH_KEY is unset: a constant, not derived from SECRET_KEY, because those
# fingerprints must outlive key rotation. Only for loopback and demos.
DEV_HASH_KEY = "dev-only-hash-key-change-me"


def N_(message: str) -> str:  # noqa: N802 - gettext's name for "mark, translate later"
    """Marks a string for extraction (pybabel -k N_) where it is defined; it is translated
    where it is shown, in the reader's language (newsletter.i18n). Here, so that the floor's
    own strings (the consent text) can be marked too."""
    return message


# Shown to readers translated; the consent ledger records this English text's version and
# hash, of which a translation is a rendering, not another text.
CONSENT_TEXT = N_(
    "I agree to receive email newsletters about the topics I selected, at the frequency I "
    "chose. I can change my preferences or unsubscribe at any time with the link in every "
    "email. My email address and my choices are kept only to send these newsletters."
)
CONSENT_TEXT_VERSION = "2026-11-01"
# What the consent text adds where CLICK_TRACKING=reader: a reader agrees to it knowingly,
# and the ledger's version says which text they saw.
CONSENT_TEXT_READER_CLICKS = (
    " The newsletter also records which stories I open from its emails, with my subscription, "
    "so the newsroom can see what its readers read."
)
CONSENT_TEXT_READER_CLICKS_VERSION = "2026-12-08+clicks"
LOCAL_SMTP_URL = "smtp://127.0.0.1:8025"
# An origin as CSP frame-ancestors takes it: http(s), a host name or an IP address (IPv6 in
# brackets), an optional port; nothing after it.
_ORIGIN = re.compile(r"https?://([a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*"
                     r"|\[[0-9a-f:.]+\])(:[0-9]{1,5})?", re.I)


def _language_tag(tag: str) -> str:
    """A BCP 47 language tag as the catalogues are named: lower case, "-" ("pt-br")."""
    norm = tag.strip().replace("_", "-").lower()
    if not re.fullmatch(r"[a-z]{2,3}(-[a-z0-9]{2,8})*", norm):
        raise ValueError(f"not a language tag: {tag!r} (en, ar, pt-br)")
    return norm


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NEWSLETTER_", extra="ignore")

    var_dir: Path = Field(default=Path("var"))
    database_url: str = ""
    broker_url: str = ""
    smtp_url: str = ""  # unset: demo/run start a capture server on LOCAL_SMTP_URL
    from_address: str = "The Newsroom <newsletter@localhost>"
    base_url: str = "http://localhost:8000"
    # The envelope sender (Return-Path) of every email, given a signed token per message:
    # mail goes out from bounces+TOKEN@domain (VERP, see newsletter/verp.py), so a bounce or
    # complaint names the message it is about. "" means bounces@ FROM_ADDRESS's domain. The
    # domain's mail server must deliver bounces+anything@ to this mailbox (Postfix:
    # recipient_delimiter = +) and hand what arrives to `newsletter bounces` or /api/bounces.
    bounce_address: str = ""
    secret_key: str = DEV_SECRET_KEY
    # Key rotation: every key that still verifies links, newest first; new links are signed
    # with the first. SECRET_KEY is the one-key shorthand (and, when this is set, its first).
    secret_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    _secret_key_outside_keys: bool = PrivateAttr(default=False)
    # Keys the HMAC of the address fingerprints we keep after erasure, bounce or complaint
    # (so a list of addresses cannot be hashed to reverse them). Never rotated: changing it
    # lets every suppressed address be mailed again.
    hash_key: str = DEV_HASH_KEY
    admin_token: str = ""
    # /metrics answers to the admin token or to this one (a Prometheus scraper's), or to
    # anyone when metrics_public; /docs, /redoc and /openapi.json likewise with docs_public.
    metrics_token: str = ""
    metrics_public: bool = False
    docs_public: bool = False
    # The site origins (scheme://host[:port], comma-separated) whose pages may frame the
    # sign-up box /embed/subscribe (CSP frame-ancestors). Empty: the box is framed nowhere,
    # as a site that never asked for it must not have its readers' sign-ups clickjacked.
    # Every other page is never framed, whatever this says.
    embed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Replaced by embed_origins (which frames only the box): set, it stops the start with a
    # message saying so, rather than being ignored while the operator thinks pages framed.
    frame_ancestors: str = ""
    smtp_rate: float = 0.0  # messages/second across all workers; 0 = unlimited
    site_name: str = "The Levant Ledger"
    # A digest shows this many stories per topic whole (picture, byline, summary) and lists
    # the rest by headline: a big week in full would pass the 102 kB at which Gmail clips a
    # message and hides its footer (the unsubscribe link, the postal address) behind a link.
    digest_lead_stories: int = Field(default=5, ge=1)
    # A task carries this many deliveries: large enough that Celery's ~1 ms per-task cost
    # and the per-batch claim/commit are noise next to ~1 ms of SMTP per message, small
    # enough that a crashed batch redelivers only seconds of work.
    batch_size: int = 200
    confirm_max_age_days: int = 7
    # The link emailed to a reader to download or delete their data, or subscribe again,
    # works this long: the long-lived links in every email (forwarded, shared) cannot do it.
    data_link_max_age_minutes: float = Field(default=60.0, gt=0)
    relay_interval_s: float = 10.0
    # A delivery 'sending' longer than this belongs to a dead worker (the reconciler puts it
    # back in the queue); a 'queued' one untouched this long lost its task. Longer than the
    # Celery hard time limit (workers/celery_app.py, 30 min), so a batch still running is
    # never taken from it, and shorter than Redis's visibility timeout (1 h), so a dead
    # worker's deliveries go out before Redis would redeliver its task.
    delivery_lease_s: float = Field(default=2400.0, gt=0)
    # Each sending process marks itself alive this often (a row in claim_holders, from a
    # thread of its own); one silent for holder_timeout_s is gone, and the reconciler takes
    # its 'sending' deliveries back at its next pass (relay_interval_s): a crash costs about
    # timeout + interval (30 + 10 s), not the lease. The timeout spans several missed beats,
    # so a process busy for a few seconds (a long render, a slow commit) is not taken for dead.
    holder_heartbeat_s: float = Field(default=5.0, gt=0)
    holder_timeout_s: float = Field(default=30.0, gt=0)
    # The first retry of a temporary failure waits this long, doubling per attempt (±50 %).
    retry_base_s: float = Field(default=60.0, gt=0)
    # How often beat asks newsletter.editions.schedule whether a daily/weekly edition is due.
    schedule_tick_s: float = Field(default=60.0, gt=0)
    # Articles published within this many seconds of the first one share one alert email
    # per reader; 0 sends an alert for each article at once. At most half an hour: an alert
    # skips stories published over an hour before its cutoff (editions.LOOKBACK).
    alert_window_s: float = Field(default=300.0, ge=0, le=1800)
    # Per client IP on POST /subscribe, in the `limits` notation; "" turns it off.
    subscribe_rate_limit: str = "10/minute;100/hour"
    # A form posted sooner than this after it was served is a bot's (humans take longer).
    form_min_seconds: float = 2.0
    form_max_age_hours: float = 24.0
    # Peers whose X-Forwarded-For names the reader (addresses or CIDRs, comma-separated).
    # Loopback by default: a reverse proxy on the same machine; a stranger on the internet
    # never connects from there. "" trusts nobody (every client is the socket's peer).
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["127.0.0.1", "::1"])
    # Confirmation emails sent per minute across all workers (0 = no ceiling): a sign-up
    # flood from many addresses must not burn the sender's reputation. Over it, they wait.
    confirmation_rate_per_minute: int = Field(default=600, ge=0)
    # Whether the SMTP relay offers SMTPUTF8 (RFC 6531): without it, an address with
    # non-ASCII letters before the @ cannot be written into a message, so the form refuses it.
    smtp_utf8: bool = False
    # Processes `newsletter web` serves with: one per core. A process runs Python on one
    # core at a time (the GIL), so a single one leaves the others idle under load.
    web_workers: int = Field(default=1, ge=1)
    log_format: str = "text"  # "json" in production: one JSON object per line
    log_level: str = "INFO"
    # The worker's Prometheus endpoint (0 = off); it aggregates all pool processes.
    worker_metrics_port: int = 0
    # DKIM: a PEM private key, its DNS selector, and the signing domain (default: From's).
    dkim_key_file: str = ""
    dkim_selector: str = ""
    dkim_domain: str = ""
    daily_send_hour: int = Field(default=6, ge=0, le=23)
    weekly_send_weekday: int = Field(default=0, ge=0, le=6)  # 0 = Monday
    timezone: str = "UTC"
    # The languages reader pages and emails are shown in: those we ship a catalogue for
    # (newsletter/locale/), English and Arabic; a site may list fewer. The first that a
    # reader's ?lang= or Accept-Language names is used, else LANGUAGE. They are also the
    # languages articles may be written in and readers may choose to read (BCP 47 primary
    # subtags, in the order the form lists them).
    languages: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["en", "ar"])
    # The site's own language: pages for a browser that asks for none we ship, readers who
    # signed up before languages existed, articles that name no language. English, as
    # every string of ours is written in it first.
    language: str = "en"
    # A fresh install (no scheduled edition yet) sends the period just past only if its send
    # time was at most this long ago; after that, scheduled editions are caught up once.
    schedule_grace_hours: float = Field(default=6.0, ge=0)
    # Readers follow topics editors curate; true keeps a small site's old way: every tag an
    # article or feed names for the first time becomes a topic readers may follow at once.
    topics_from_tags: bool = False
    # Feeds beat polls: "URL" or "URL Default Tag" (the tag for entries without a category;
    # URLs never contain spaces), comma-separated or a JSON list.
    feeds: Annotated[list[str], NoDecode] = Field(default_factory=list)
    feed_poll_minutes: float = 15.0
    # Feed fetching refuses private, loopback and link-local targets (SSRF) unless this is
    # set, or the host is named in feed_allowed_hosts (an internal CMS, say).
    feed_allow_private: bool = False
    feed_allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    feed_timeout_s: float = 10.0
    feed_max_bytes: int = 5 * 1024 * 1024
    # Outgoing webhooks (newsletter/webhooks): the same SSRF guard as feeds, with its own
    # switches: an internal CMS is named here, or private targets allowed (tests, one host).
    webhook_allow_private: bool = False
    webhook_allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # A receiver answers within this or the attempt fails: a slow one must not hold a
    # worker (the Standard Webhooks guidance is to answer fast and work later).
    webhook_timeout_s: float = Field(default=5.0, gt=0, le=60)
    # Retries: full jitter up to base × 2^(attempt-1), at most retry_max_s apart. 30 s
    # doubling to the hour covers a receiver's deploy in minutes and an outage in hours.
    webhook_retry_base_s: float = Field(default=30.0, gt=0)
    webhook_retry_max_s: float = Field(default=3600.0, gt=0)
    # Dead-lettered after this many attempts or this many hours since the event, whichever
    # comes first: a day covers a receiver down overnight or a weekend's first day; 60
    # attempts at the backoff above take at least 26 hours, so by default the day is what
    # ends the retries (the count is for operators who want fewer).
    webhook_max_attempts: int = Field(default=60, ge=1)
    webhook_max_age_hours: float = Field(default=24.0, gt=0)
    # How often beat looks for due retries (first attempts go at once, on the event's
    # doorbell); 5 s keeps a retry near its due time and costs one indexed query.
    webhook_tick_s: float = Field(default=5.0, gt=0)
    # Retention (editions/retention.py, beat once a day): delivery rows of editions finished
    # more than this many days ago are dropped, keeping what "never twice", corrections,
    # reports, consent and audit need. 400 rather than off: the ledger of a daily million
    # grows by gigabytes a year, and nothing a reader or a report sees is lost; 400 rather
    # than 90 keeps a full year of delivery detail for year-on-year questions. 0 turns it off.
    retention_days: int = Field(default=400, ge=0)
    # Rows per transaction when pruning: a few thousand keep each lock to milliseconds.
    retention_batch: int = Field(default=5000, ge=1)
    # A reader is suppressed for soft bounces (mailbox full, host down) once this many of
    # our messages to them soft-bounced on at least two different days within this many
    # days. Each message counts once however many delay notices it causes, and two days
    # are needed so one bad day at a provider never unsubscribes anyone. Three weeks, not
    # two, so the rule also catches a weekly reader whose mailbox stays full (three weekly
    # digests span 14 days plus however late their bounces come); for a daily reader it
    # means three rejected digests within three weeks — a mailbox nobody is reading.
    soft_bounce_limit: int = Field(default=3, ge=1)
    soft_bounce_days: float = Field(default=21.0, gt=0)

    # The newsroom console (/admin): a signed-in browser is signed out after this long
    # without a request, and in any case this long after signing in.
    console_idle_minutes: float = Field(default=60.0, gt=0)
    console_session_hours: float = Field(default=12.0, gt=0)
    # This many wrong passwords for one account, each within login_lock_minutes of the
    # last, lock it for login_lock_minutes. One address (a client IP, or an IPv6 /64) may
    # fail login_address_limit times (`limits` notation) whichever accounts it tries.
    login_max_failures: int = Field(default=5, ge=1)
    login_lock_minutes: float = Field(default=15.0, gt=0)
    login_address_limit: str = "20/15minutes"

    # Story links in digests and alerts (issue 20): "aggregate" counts clicks per edition,
    # story and topic and names no reader (the default: honest figures without tracking
    # anyone); "reader" also names the delivery, for sites whose privacy text says so (the
    # consent text then states it); "off" links straight to the story.
    click_tracking: Literal["aggregate", "reader", "off"] = "aggregate"
    # Clicks are counted in the web process and written every this many seconds: the
    # redirect never waits for the database, and a killed process loses at most this long.
    click_flush_seconds: float = Field(default=1.0, gt=0, le=60)
    # A GET with no user agent or a program's agent this soon after the email went out is a
    # link scanner at the receiving server, not a reader (docs/operations.md, "Click counting").
    click_scanner_window_seconds: float = Field(default=120.0, ge=0)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r} (an IANA name: Europe/Berlin)") from None
        return v

    @field_validator("embed_origins")
    @classmethod
    def _origins(cls, v: list[str]) -> list[str]:
        # Only what the issue names: a header value made of anything else could carry
        # another directive (";"), a wildcard or 'self' the operator did not mean.
        for origin in v:
            if not _ORIGIN.fullmatch(origin) or not _port_in_range(origin):
                raise ValueError(f"EMBED_ORIGINS: {origin!r} is not an origin; write each as "
                                 "scheme://host[:port] (http or https, no path, no '/' at "
                                 "the end, no wildcard), e.g. https://www.news.example")
        return [origin.lower() for origin in v]

    @field_validator("frame_ancestors")
    @classmethod
    def _replaced(cls, v: str) -> str:
        if v.strip() not in ("", "'none'"):  # its old default asked for what is now so
            raise ValueError("FRAME_ANCESTORS is replaced by EMBED_ORIGINS, which lets the "
                             "sites listed frame the sign-up box (/embed/subscribe) and no "
                             "other page; unset FRAME_ANCESTORS and set EMBED_ORIGINS")
        return v

    @field_validator("bounce_address")
    @classmethod
    def _bounce_mailbox(cls, v: str) -> str:
        v = v.strip().lower()
        # 32 leaves room for "+", the token and a 64-octet local part (RFC 5321).
        if v and not re.fullmatch(r"[a-z0-9._-]{1,32}@[a-z0-9-]+(\.[a-z0-9-]+)*", v):
            raise ValueError("BOUNCE_ADDRESS must be a plain address such as "
                             "bounces@news.example: a local part of at most 32 letters, "
                             "digits, dots, hyphens or underscores (no '+')")
        return v

    @field_validator("database_url")
    @classmethod
    def _psycopg3(cls, v: str) -> str:
        # "postgresql://" would pick psycopg2, which we do not ship.
        for prefix in ("postgresql://", "postgres://"):
            if v.startswith(prefix):
                return "postgresql+psycopg://" + v[len(prefix):]
        return v

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        import ipaddress

        for item in v:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"not an address or CIDR: {item!r}") from None
        return v

    @field_validator("feeds", "feed_allowed_hosts", "webhook_allowed_hosts", "secret_keys",
                     "trusted_proxies", "embed_origins", "languages", mode="before")
    @classmethod
    def _list(cls, v: object) -> object:
        if isinstance(v, str):
            v = v.strip()
            if v.startswith("["):
                return json.loads(v)
            return [item.strip() for item in v.split(",") if item.strip()]
        return v

    @field_validator("languages")
    @classmethod
    def _language_tags(cls, v: list[str]) -> list[str]:
        tags = [_language_tag(t) for t in v]
        if not tags:
            raise ValueError("LANGUAGES must name at least one language (en,ar)")
        return list(dict.fromkeys(tags))

    @field_validator("language")
    @classmethod
    def _language_tag(cls, v: str) -> str:
        return _language_tag(v)

    @model_validator(mode="after")
    def _default_language_listed(self) -> Settings:
        # The fallback of every negotiation must itself be a language we show.
        if self.language not in self.languages:
            raise ValueError(f"LANGUAGE {self.language!r} is not one of LANGUAGES "
                             f"{','.join(self.languages)}")
        return self

    @model_validator(mode="after")
    def _newest_key_signs(self) -> Settings:
        # Everything that reads secret_key (child processes included) sees the signing key.
        # A SECRET_KEY set beside a list that lacks it is a mistake preflight reports (an
        # exception here would print the values, secrets included).
        if self.secret_keys:
            self._secret_key_outside_keys = ("secret_key" in self.model_fields_set
                                             and self.secret_key not in self.secret_keys)
            self.secret_key = self.secret_keys[0]
        return self

    @property
    def signing_keys(self) -> tuple[str, ...]:
        """The keys links verify with, newest (the one that signs) first."""
        return tuple(self.secret_keys) or (self.secret_key,)

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.var_dir / 'newsletter.db').resolve()}"

    @property
    def smtp(self) -> str:
        return self.smtp_url or LOCAL_SMTP_URL

    @property
    def broker(self) -> str:
        return self.broker_url or "filesystem://"

    @property
    def broker_dir(self) -> Path:
        return (self.var_dir / "broker").resolve()

    @property
    def uses_embedded_broker(self) -> bool:
        return self.broker.startswith("filesystem://")

    @property
    def mail_domain(self) -> str:
        addr = self.from_address.rsplit("<", 1)[-1].rstrip(">")
        return addr.rsplit("@", 1)[-1] or "localhost"

    @property
    def bounce_mailbox(self) -> tuple[str, str]:
        """The bounce address's local part and domain (VERP tokens go between them)."""
        local, _, domain = (self.bounce_address or f"bounces@{self.mail_domain}").rpartition("@")
        return local, domain.lower()

    @property
    def from_email(self) -> str:
        return self.from_address.rsplit("<", 1)[-1].rstrip(">").strip()

    @property
    def list_id(self) -> str:
        host = urlsplit(self.base_url).hostname or self.mail_domain
        return f"<digest.{host}>"

    @property
    def consent_text(self) -> str:
        """The consent text the forms show: it states per-reader click counting where on."""
        if self.click_tracking == "reader":
            return CONSENT_TEXT + CONSENT_TEXT_READER_CLICKS
        return CONSENT_TEXT

    @property
    def consent_text_version(self) -> str:
        if self.click_tracking == "reader":
            return CONSENT_TEXT_READER_CLICKS_VERSION
        return CONSENT_TEXT_VERSION

    @property
    def consent_text_hash(self) -> str:
        return hashlib.sha256(self.consent_text.encode()).hexdigest()

    def ensure_var(self) -> None:
        self.var_dir.mkdir(parents=True, exist_ok=True)
        if self.uses_embedded_broker:
            for sub in ("queue", "processed"):
                (self.broker_dir / sub).mkdir(parents=True, exist_ok=True)


def _port_in_range(origin: str) -> bool:
    try:
        urlsplit(origin).port  # noqa: B018 - it raises for a port past 65535
    except ValueError:
        return False
    return True


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once from the environment."""
    return Settings()


def reload_settings() -> Settings:
    """Re-read the environment (tests and ``demo`` change it within one process)."""
    get_settings.cache_clear()
    return get_settings()


def child_env(settings: Settings) -> dict[str, str]:
    """The environment for a worker/beat subprocess that must see the same settings."""
    env = dict(os.environ)
    env.update(
        NEWSLETTER_VAR_DIR=str(settings.var_dir.resolve()),
        NEWSLETTER_DATABASE_URL=settings.db_url,
        NEWSLETTER_BROKER_URL=settings.broker_url,
        NEWSLETTER_SMTP_URL=settings.smtp,
        NEWSLETTER_BASE_URL=settings.base_url,
        NEWSLETTER_SECRET_KEY=settings.secret_key,
        NEWSLETTER_HASH_KEY=settings.hash_key,
        NEWSLETTER_FROM_ADDRESS=settings.from_address,
        NEWSLETTER_BOUNCE_ADDRESS=settings.bounce_address,
    )
    return env
