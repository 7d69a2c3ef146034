"""``mmaffect pretrained list | build NAME | verify NAME``: the named checkpoints (see :mod:`mmaffect.pretrained`)."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "pretrained", help="list, build or check the pretrained models (pretrained:NAME)",
        description="Named pretrained models. 'build NAME' trains one from the data in $MMAFFECT_DATA with the "
                    "generic trainer and packs it with its model card (the shipped default analysis model goes "
                    "into the package folder, the others to $MMAFFECT_CACHE/pretrained/NAME); 'verify NAME' "
                    "checks its files against the card's sha256. Use one as --checkpoint pretrained:NAME or "
                    "mmaffect.load('pretrained:NAME'); a hub repository works as hf:OWNER/REPO.")
    p.add_argument("action", choices=["list", "build", "verify"])
    p.add_argument("name", nargs="?", help="model name (see 'mmaffect pretrained list')")
    p.add_argument("--seeds", type=int, default=3, help="seeds to train (default 3)")
    p.add_argument("--work", help="folder for the training runs (default $MMAFFECT_CACHE/pretrained-work/NAME; "
                                  "re-running resumes)")
    p.add_argument("--output", help="folder for the packed model (default: see above)")
    p.add_argument("--dtype", choices=["auto", "float32", "float16"], default="auto",
                   help="stored weight type (auto: float16 for the shipped model, float32 otherwise)")
    p.add_argument("--cache", help="voice-ravdess: an existing RAVDESS extraction with the Whisper encoder "
                                   "(default: extract into the work folder)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def print_table() -> None:
    from mmaffect.pretrained import available

    for row in available():
        where = row["path"] or f"not built (mmaffect pretrained build {row['name']})"
        print(f"pretrained:{row['name']:<15}{row['summary']}")
        print(f"{'':26}reads: {row['reads']}")
        if row["headline"]:
            print(f"{'':26}test: {row['headline']}")
        print(f"{'':26}{'shipped' if row['shipped'] else 'built'}: {where}")


def run(args: argparse.Namespace) -> int:
    from mmaffect.errors import ConfigError

    if args.action == "list":
        print_table()
        return 0
    if not args.name:
        raise ConfigError(f"mmaffect pretrained {args.action} needs a NAME (see 'mmaffect pretrained list')")
    if args.action == "verify":
        from mmaffect.pretrained import location, verify

        folder = location(args.name)
        card = verify(folder)
        print(f"{folder}: {len(card['files'])} file(s) match their sha256")
        return 0
    from mmaffect.commands.pretrained_build import build

    folder, card = build(args.name, args)
    print(f"pretrained:{args.name}: {folder} ({card['members']} member(s), {card['weights_dtype']}); "
          f"test {card['headline']} ({card['spread']})")
    return 0
