"""The `exchange` command line: `up`, `matcher`, `gateway`, `admin`."""
