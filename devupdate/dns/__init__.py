"""Discovery by DNS: phones that never had a user find the service as ``ucupdates-r2.<domain>``.

``records`` turns settings into the record set (pure), ``responder`` answers for it, ``publisher``
pushes it into the organisation's own DNS with RFC 2136, ``cli`` is the ``devupdate dns`` group.
"""
