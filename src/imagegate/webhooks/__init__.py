"""Webhooks: a durable outbox, Standard Webhooks signatures, an SSRF guard and a sender."""
