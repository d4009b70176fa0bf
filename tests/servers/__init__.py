"""Reusable local servers for integration tests (HTTP via uvicorn, websockets, TLS).

The fixtures live in :mod:`tests.servers.fixtures`.
"""
