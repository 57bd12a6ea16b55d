"""Users: the profile and its pure updates, dedupe, pseudonymization, rate limits,
compact table values."""
