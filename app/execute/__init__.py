"""Using a configured source with its stored credentials, without handing them out: execute's
``list``/``get`` of a source's streams (service.py) and the proxy to its API (proxy.py)."""
