"""The SDK's version, in one place: read by ``kailash.__version__``, the gateway and exports."""

__version__ = "0.1.0"
