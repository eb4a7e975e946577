"""Running the compiled app: the clock now; records, events and the engine to come."""
