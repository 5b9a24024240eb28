"""One module per part of the audit checklist; each returns findings (and, for the overview, tables)."""
