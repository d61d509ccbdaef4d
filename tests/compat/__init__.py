"""Wire-compatibility tests: replay recorded Ollama exchanges (``compat_fixtures/``)."""
