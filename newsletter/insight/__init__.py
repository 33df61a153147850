"""Newsroom insight: what editions did, counted without watching readers (issue 20): clicks,
topic growth, unsubscribes per edition; aggregate figures, never a reader's trail."""
