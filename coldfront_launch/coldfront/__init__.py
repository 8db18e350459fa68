"""coldfront."""
