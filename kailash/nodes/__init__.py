"""The node catalog, by domain: data, code, logic, api, ai, mcp.

Import node classes from their modules (``kailash.nodes.data.readers``); this package
imports nothing so that ``import kailash`` stays fast.
"""
