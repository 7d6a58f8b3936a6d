"""The audit log: every change, who made it and why, in a tamper-evident hash chain."""
