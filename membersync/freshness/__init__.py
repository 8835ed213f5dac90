"""Keeping a member's external profiles fresh: the sync itself, the job, and the login path."""
