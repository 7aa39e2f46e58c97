"""The HTTP API (contract section 5): a thin FastAPI layer over `models`."""
