"""Transport security: certificates phones accept (``certs``) and the ``devupdate cert`` group (``cli``)."""
