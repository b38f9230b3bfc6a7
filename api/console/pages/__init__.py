"""Page handlers, one module per area; each takes the API's Call (``call.console`` is the PageRequest)."""
