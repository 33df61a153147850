"""Outgoing webhooks: the site's own systems (a CMS, the data team) told of what happened.

An admin registers an endpoint (a URL and the events it wants). Facts are recorded as outbox
events in the transaction that makes them true (newsletter.events); ``fanout`` turns each
into one delivery row per endpoint that wants it, and ``delivery`` POSTs them, signed the
Standard Webhooks way (``signing``), at least once, in order per reader, retried with
backoff and dead-lettered after a limit. Every target goes through the feeds' SSRF guard,
at registration and again before each attempt.
"""
