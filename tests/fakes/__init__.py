"""Stand-in servers the tests talk to over HTTP on 127.0.0.1."""
