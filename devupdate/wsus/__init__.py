"""The WSUS front: the update catalog, the SOAP endpoints and the content they hand out."""
