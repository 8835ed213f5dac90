"""The login path: refresh stale login-bound providers inline, then issue a JWT from fresh data."""
