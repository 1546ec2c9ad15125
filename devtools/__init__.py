"""Development tools shared by tests/, scripts/ and bench/ (not part of the deployed app)."""
