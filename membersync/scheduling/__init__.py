"""The 5-minute tick and manual syncs: decide which providers are due and dispatch their members."""
