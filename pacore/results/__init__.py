"""What a campaign produced, for people and tools: export (the official results format), grading,
reports, archives."""
