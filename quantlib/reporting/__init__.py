"""Reporting: the summary table from the records, statistics, claims, and the book's tables and figures."""
