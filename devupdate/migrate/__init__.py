"""Moving to devupdate from another server: ``devupdate migrate lync`` (lync.py, lyncexport.py)."""
