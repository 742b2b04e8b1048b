"""Backup and restore of a whole installation: database, filestore and the data directory's keys and
settings (``devupdate backup create DIR`` / ``devupdate backup restore DIR``)."""
