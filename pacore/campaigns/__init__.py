"""Operating campaigns: submitting problem files, reading their status, and controlling them (pause,
resume, cancel, retry, budgets, quarantine, delete)."""
