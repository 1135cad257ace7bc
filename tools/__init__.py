"""Developer tools run from the repository (``make examples``); not part of any package."""
