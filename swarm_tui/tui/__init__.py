"""The full-screen app (Textual). The engine never imports this package."""
