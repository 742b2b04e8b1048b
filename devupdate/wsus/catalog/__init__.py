"""The update catalog: revisions, fragments, files, relationships, categories (spec wsus.md §1a, §6)."""

#: an update's states in the listings, in this order of precedence (``deleted`` ones are listed only when asked for)
STATES = ("published", "expired", "declined", "superseded", "deleted")
