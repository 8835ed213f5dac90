"""The external-ID tracker: which local entity is which record in which source."""
