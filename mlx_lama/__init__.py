"""mlx-lama: Ollama's API and CLI, running models on Apple's MLX."""

__version__ = "0.1.0"

# The version reported on /api/version. Clients (Open WebUI, editor plugins) gate features on the
# Ollama version they talk to, so we report the Ollama release whose wire protocol we mirror.
OLLAMA_COMPAT_VERSION = "0.32.15"
