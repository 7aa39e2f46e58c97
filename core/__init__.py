"""Ground floor: settings, URL parsing and the job producer; imports nothing of the project."""
