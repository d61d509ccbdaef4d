"""Help texts: the environment-variable epilogs of ``--help`` and the REPL's ``/?`` screens.

The REPL texts are Ollama's (``cmd/interactive.go``) with "ollama" replaced by "mlx-lama".
"""

from __future__ import annotations


def _env(rows: list[tuple[str, str]]) -> str:
    # Ollama's layout: "Environment Variables:" then "      %-27s   %s" per variable.
    return "Environment Variables:\n" + "".join(f"      {name:<27}   {desc}\n" for name, desc in rows)


_HOST = ("OLLAMA_HOST", "IP Address for the mlx-lama server (default 127.0.0.1:11434)")

_NOHISTORY = ("OLLAMA_NOHISTORY", "Do not preserve readline history (~/.mlx-lama/history)")
_KEY = ("MLX_LAMA_API_KEY", "API key: serve requires it (Authorization: Bearer); client verbs send it "
        "(else OLLAMA_API_KEY)")
_SERVER = [
    ("OLLAMA_DEBUG", "Show additional debug information (e.g. OLLAMA_DEBUG=1)"),
    _HOST,
    ("OLLAMA_CONTEXT_LENGTH", "Context length to use unless otherwise specified (default: 4096)"),
    ("OLLAMA_KEEP_ALIVE", "The duration that models stay loaded in memory (default \"5m\")"),
    ("OLLAMA_MAX_LOADED_MODELS", "Maximum number of loaded models (default 3)"),
    ("OLLAMA_MAX_QUEUE", "Maximum number of queued requests (default 512)"),
    ("OLLAMA_MODELS", "The path to the models directory (default ~/.mlx-lama/models)"),
    ("OLLAMA_NUM_PARALLEL", "Maximum number of parallel requests (default 1)"),
    ("OLLAMA_ORIGINS", "A comma separated list of allowed origins"),
    _KEY,
    ("MLX_LAMA_API_KEY_FILE", "Read MLX_LAMA_API_KEY from this file instead (serve and clients)"),
    ("MLX_LAMA_SHUTDOWN_GRACE", "Seconds in-flight streams get to finish on shutdown (default 10)"),
    ("MLX_LAMA_REGISTRY", "Your model-name aliases (default ~/.mlx-lama/registry.yaml)"),
    ("MLX_LAMA_BACKEND", "Backend for generation models: auto, mlx-lm or vllm-mlx (default auto)"),
    ("MLX_LAMA_VLLM_MLX", "The vllm-mlx executable, or the environment holding it"),
    ("HF_ENDPOINT", "The Hugging Face hub pulls download from (default https://huggingface.co)"),
    ("HF_TOKEN", "Hugging Face token for gated and private repositories"),
]

CLIENT_ENV = _env([_HOST, _KEY])
RUN_ENV = _env([_HOST, _KEY, _NOHISTORY])
SERVE_ENV = _env(_SERVER)
# The top-level help (and so the man page) lists every variable any verb reads.
ALL_ENV = _env([_HOST, _KEY, _NOHISTORY] + [row for row in _SERVER if row not in (_HOST, _KEY)])

NO_AUTOSTART = ("The client verbs talk to the server at OLLAMA_HOST and never start one:\n"
                "run 'mlx-lama serve' first (in another terminal, or as a service).")

REPL_USAGE = """Available Commands:
  /set            Set session variables
  /show           Show model information
  /load <model>   Load a session or model
  /save <model>   Save your current session
  /clear          Clear session context
  /bye            Exit
  /?, /help       Help for a command
  /? shortcuts    Help for keyboard shortcuts

Use \"\"\" to begin a multi-line message.

"""

REPL_SET = """Available Commands:
  /set parameter ...     Set a parameter
  /set system <string>   Set system message
  /set history           Enable history
  /set nohistory         Disable history
  /set wordwrap          Enable wordwrap
  /set nowordwrap        Disable wordwrap
  /set format json       Enable JSON mode
  /set noformat          Disable formatting
  /set verbose           Show LLM stats
  /set quiet             Disable LLM stats
  /set think             Enable thinking
  /set nothink           Disable thinking

"""

REPL_SHORTCUTS = """Available keyboard shortcuts:
  Ctrl + a            Move to the beginning of the line (Home)
  Ctrl + e            Move to the end of the line (End)
   Alt + b            Move back (left) one word
   Alt + f            Move forward (right) one word
  Ctrl + k            Delete the sentence after the cursor
  Ctrl + u            Delete the sentence before the cursor
  Ctrl + w            Delete the word before the cursor

  Ctrl + l            Clear the screen
  Ctrl + c            Stop the model from responding
  Ctrl + d            Exit mlx-lama (/bye)

"""

REPL_SHOW = """Available Commands:
  /show info         Show details for this model
  /show license      Show model license
  /show modelfile    Show Modelfile for this model
  /show parameters   Show parameters for this model
  /show system       Show system message
  /show template     Show prompt template

"""

REPL_PARAMETERS = """Available Parameters:
  /set parameter seed <int>             Random number seed
  /set parameter num_predict <int>      Max number of tokens to predict
  /set parameter top_k <int>            Pick from top k num of tokens
  /set parameter top_p <float>          Pick token based on sum of probabilities
  /set parameter min_p <float>          Pick token based on top token probability * min_p
  /set parameter num_ctx <int>          Set the context size
  /set parameter temperature <float>    Set creativity level
  /set parameter repeat_penalty <float> How strongly to penalize repetitions
  /set parameter repeat_last_n <int>    Set how far back to look for repetitions
  /set parameter num_gpu <int>          The number of layers to send to the GPU
  /set parameter stop <string> <string> ...   Set the stop parameters

"""
