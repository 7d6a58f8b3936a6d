"""The FastAPI edge: routers per capability, bearer-token auth, the one error mapping."""
