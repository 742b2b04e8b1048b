"""Importing vendor .cab packages into the filestore and the rule table."""
