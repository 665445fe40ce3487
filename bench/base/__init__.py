"""What every layer may use, and which imports no other part of sqla-bench: exit statuses
and the one-line errors (``errors``), a process's owner label and the temporary folders
that name theirs (``owner``), reading a file a user names (``reading``), and stopping
at a safe point on Ctrl-C or SIGTERM (``stopping``)."""
