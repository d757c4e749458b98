"""model: typed resources, validation, ACK defaults and label selectors (Kubernetes and Calico grammar).

Turns YAML text into a validated ``Resources`` bundle or a list of ``Diagnostic``s that name the file,
the document, the object and the field. Never does I/O: callers hand it text.
"""
