"""cli: the ``acknet`` command. A thin edge: parses options, calls the layers below, prints. Holds no
business logic."""
