"""Command-line interface (click). Thin: parse, call the library, format."""
