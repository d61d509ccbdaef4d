"""`python -m mlx_lama` runs the CLI."""

from mlx_lama.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
