"""``python -m expokit.cli``: the same as the ``expokit`` command."""

from expokit.cli.main import main

if __name__ == "__main__":
    main()
