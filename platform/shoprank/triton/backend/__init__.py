"""Files copied verbatim into a Triton model version directory (they import no shoprank code)."""
