"""Demo data for a first look, and importers for a firm's real data."""
