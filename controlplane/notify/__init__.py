"""Signed webhook notifications: other systems are told when something happens.

``config`` reads the fleet's ``notifications.yml`` (targets: a URL, the events, an optional
member filter, where the signing secret comes from). ``scanner`` turns what the durable
records say happened (finished runs, audit entries, window edges) into deliveries in the
database, one per matching target and event. ``delivery`` sends due deliveries from serve's
background, signed as Standard Webhooks, retrying with backoff. ``service`` ties both to
serve's scheduler. Nothing here runs in a run's thread: a slow receiver never slows a run.
"""
