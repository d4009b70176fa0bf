"""The kailash command line."""
