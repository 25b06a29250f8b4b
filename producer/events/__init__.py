"""The user-events API: users POST events, stored durably in SQLite; Airflow pulls by window."""
