"""The SOAP layer of the WSUS front: envelopes and faults (pure), the service table, dispatch."""
