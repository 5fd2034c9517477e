"""The generator of synthetic landing folders, by profile (see lienwatch.generate)."""
