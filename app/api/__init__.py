"""HTTP API: dependencies (deps.py) and routers (routes/)."""
