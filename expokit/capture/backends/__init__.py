"""Camera backends; import them through :mod:`expokit.capture.factory` (lazy SDK imports)."""
