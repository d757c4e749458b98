"""store: the desired state as files and as a versioned record.

Reads the files a user names (files, folders, standard input) and, for running emulations, keeps
versioned desired state with change events. Never touches the kernel.
"""
