"""HTTP routes, one module per path family."""
