"""Newsroom insight: what editions did, counted without watching readers (issue 20)."""
