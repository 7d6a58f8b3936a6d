"""Uptime: probes of every deployed instance, availability and SLOs."""
