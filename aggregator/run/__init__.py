"""The poll loop, schedule decisions, the scheduler and the daemon."""
