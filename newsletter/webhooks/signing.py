"""Standard Webhooks signatures: HMAC-SHA256 over ``id.timestamp.body``.

Headers ``webhook-id`` (the same for every retry of a message, so a receiver can drop
repeats), ``webhook-timestamp`` (Unix seconds, so a receiver can refuse old replays) and
``webhook-signature: v1,<base64>``. The body is signed exactly as sent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from newsletter.webhooks.secrets import key_of

USER_AGENT = "newsletter-webhooks/0.1"


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(key_of(secret), f"{message_id}.{timestamp}.".encode() + body,
                   hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def headers(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {"webhook-id": message_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": signature(secret, message_id, timestamp, body),
            "content-type": "application/json", "user-agent": USER_AGENT}
