"""Response models shared by every edge.

The CLI's ``--json`` prints exactly these models (``model_dump(mode="json")``) and the HTTP
API returns the same ones, so the two cannot drift apart. One module per capability.
"""
