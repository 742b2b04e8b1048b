"""The MS-WUSP client-server operations (spec/wsus.md §3, §4.3): sealed cookies (``cookies``, pure),
their keys and the server's identity (``keys``), the authorization operations (``auth``), the reporting
operations (``reporting``)."""
