"""The external-API stand-in: data files and the device simulator served as paged HTTP routes."""
