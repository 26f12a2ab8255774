"""One run: the recipe (``recipe``), its folder (``folder``) and its own process (``worker``)."""
