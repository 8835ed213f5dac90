"""The job kernel: a ledger table that is the truth about every job, and huey to deliver it."""
