"""The typer edge: each command parses its options, calls an operation, prints the result.

No command decides anything; the operations do (``controlplane.<capability>.operations``).
``--json`` prints the same response models the HTTP API returns. Our errors become one
line on stderr and an exit code in ``root.exit_code_for``, the only place that maps them.
"""

from controlplane.cli.root import app, exit_code_for, main, run

__all__ = ["app", "exit_code_for", "main", "run"]
