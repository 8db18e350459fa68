"""What is composed of the lifecycle: ``backup`` (online, one 0600 archive), ``restore``
(checked first, into a stopped instance) and ``upgrade`` (a new image, a backup first, a
rollback if it does not answer), with the archive format (``archive``) and SQLite's online
backup inside the instance (``sqlitedb``)."""
