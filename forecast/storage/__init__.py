"""Durable storage: engine, tables, migrations and repository functions (the only SQL callers)."""
