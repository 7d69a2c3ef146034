"""Sub-commands that live in their own modules: each exposes ``add_parser(subparsers)`` and ``run(args)``."""
