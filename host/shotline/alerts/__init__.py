"""Alerts a dispatch or records system can take: GeoJSON, CAP 1.2 XML, webhooks.

- :mod:`.geojson`: incidents as a FeatureCollection (points and 95 % ellipses);
- :mod:`.cap`: one OASIS CAP 1.2 ``<alert>`` per incident;
- :mod:`.webhook`: HTTP POST through a durable SQLite outbox, with retries,
  exponential backoff with jitter and a stable ``Idempotency-Key``.

See ``docs/alerts.md``.
"""
