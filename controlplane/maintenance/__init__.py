"""Scheduled maintenance: host patching and drift checks when their window opens, and
deploys queued for the next window, run by the scheduler in ``controlplane serve``."""
