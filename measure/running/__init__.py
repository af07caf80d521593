"""Running a batch: the batch config (TOML → validated cells), the local engine and the
Ray engine."""
