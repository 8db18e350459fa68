"""Built-in hooks: bridge and override. Registered through entry points like any plugin."""
