"""Headwater's pipeline health checks for Airflow: probes (I/O) and the sensors that run them.

Airflow puts the plugins folder on sys.path, so this package imports as `headwater_health`.
"""
