"""Members: the local system of record."""
