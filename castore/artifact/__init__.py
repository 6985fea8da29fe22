"""Building versions: draft writing, directory walking and the finalize transaction."""
