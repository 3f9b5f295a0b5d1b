"""`python -m rmforge.cli`: the `rmforge` command (the tests run it so, in subprocesses)."""

from rmforge.cli import app

if __name__ == "__main__":
    app()
