"""Built-in scenario files and the stress-suite runner."""
