"""What editors see of what editions did: aggregate figures, never a reader's trail."""
