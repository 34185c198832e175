"""Pack what a training run needs onto the GPU machine, and unpack it there.

The GPU machine (see docs/training.md, "The GPU run") starts bare, without network, and
receives the work tree plus a few ignored folders, 64 MiB in all. ``pack`` builds such a
folder (``.device/`` by default)::

    .device/wheels/            Python 3.12 wheels that machine lacks (soundfile, cffi, ...)
    .device/data/<split>/<piece>/AuSep_<j>_<inst>_<id>.ogg   stems as Ogg Vorbis
    .device/data/<split>/<piece>/Notes_<j>_<inst>_<id>.txt   the players' notes (voice ranks)
    .device/data/<split>/vimss_synth.json                    the generator's manifest
                               (--extra-train folders, e.g. real solos, join train/ first)
    .device/realval/<name>/<piece>/AuSep_*.ogg   with --real-valid: real recordings the run
                               scores at each validation (never trains on), most players first
    .device/config.toml        the run's configuration
    .device/init.safetensors   with --init: weights to start from (a returned
                               last.safetensors); the training data shrinks to make room
    .device/pack.json          what was packed: pieces, seconds, bytes, codec setting

Training pieces are added in number order until the budget is spent, so the whole tree plus
the pack stays within the limit; the sizes are printed. ``unpack`` decodes the stems back
into a URMP-layout tree of float WAV files (libsndfile only: the GPU machine has no ffmpeg).

    python scripts/device_pack.py pack --data ~/vimss-work/data/gpu-lib \
        --extra-train ~/vimss-work/data/gpu-lib/solos --real-valid ../shared/realval/bach10
    python scripts/device_pack.py unpack .device/data /tmp/vimss-device/data
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from importlib import metadata
from pathlib import Path

import soundfile

REPO = Path(__file__).resolve().parent.parent
SRC = REPO / "src"
if str(SRC) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(SRC))

from vimss_cli.atomic import atomic_path, write_text_atomically  # noqa: E402
from vimss_cli.urmp import SYNTH_MANIFEST_NAME, list_pieces  # noqa: E402

MIB = 2**20
#: what travels to the GPU machine at most (work tree plus carried folders)
TRAVEL_LIMIT_MIB = 64.0
#: Python packages ``vimss train`` imports that the GPU machine's image lacks
DEVICE_WHEELS = (
    "soundfile",
    "cffi",
    "pycparser",
    "tensorboardX",
    "ffmpeg-python",
    "future",
    "typer",
    "click",
)
#: libsndfile's Vorbis setting: 0 is the best quality, 1 the smallest file. At 0.7, stems of
#: the synthetic data decode at a median 25 dB signal-to-noise ratio, 3.6 KiB/s
#: (docs/training.md): the bundled models fill most of the 64 MiB that travels.
DEFAULT_VORBIS_LEVEL = 0.7
#: what the real recordings of --real-valid may take of the pack: 10 of Bach10's 12 quartet
#: excerpts (40 stems, 4.6 min of stems) fit in it (1.41 MiB), in place of 5 training pieces
DEFAULT_REAL_VALID_MIB = 1.5


def travelling_tree_bytes(repo: Path, without_models: bool = False) -> int:
    """Bytes of the files that travel with every device call: tracked files and untracked
    files git does not ignore (``shared/`` inside the checkout included); without the bundled
    models' files (``models/*.safetensors``) when ``without_models`` (``make device-lean``
    removes them from the work tree for the run)."""
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=repo,
        capture_output=True,
        check=True,
    ).stdout
    total = 0
    for name in listing.decode().split("\0"):
        path = repo / name
        # the separation models only (models/*.safetensors), as make device-lean removes them;
        # models/notes/ and models/pose/ travel
        if (
            without_models
            and name.startswith("models/")
            and name.count("/") == 1
            and name.endswith(".safetensors")
        ):
            continue
        if name and path.is_file():
            total += path.stat().st_size
    return total


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def download_wheels(target: Path) -> None:
    """Fetch the wheels of :data:`DEVICE_WHEELS` for CPython 3.12 on manylinux x86-64, at the
    versions installed here (so both machines run the same code)."""
    target.mkdir(parents=True, exist_ok=True)
    platforms = [
        "manylinux_2_28_x86_64",
        "manylinux_2_27_x86_64",
        "manylinux_2_17_x86_64",
        "manylinux2014_x86_64",
        "manylinux1_x86_64",
        "any",
    ]
    wanted = []
    for name in DEVICE_WHEELS:
        try:
            wanted.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            wanted.append(name)
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
    command += ["--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp"]
    for platform in platforms:
        command += ["--platform", platform]
    command += ["-d", str(target), *wanted]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["pip failed"])[-1]
        raise SystemExit(f"error: cannot download the device wheels: {last}")


def _encode_stem(job: tuple[str, str, float]) -> int:
    source, target, level = job
    samples, rate = soundfile.read(source, dtype="float32", always_2d=False)
    soundfile.write(target, samples, rate, format="OGG", subtype="VORBIS", compression_level=level)
    return os.path.getsize(target)


def pack_split(
    split_dir: Path,
    out_dir: Path,
    level: float,
    budget: int | None,
    workers: int,
    most_players_first: bool = False,
    skip: frozenset[str] = frozenset(),
) -> dict[str, object]:
    """Encode the stems of ``split_dir``'s pieces into ``out_dir``, in piece order (or, with
    ``most_players_first``, the pieces with most players first), until ``budget`` bytes
    (``None``: all pieces), leaving out the piece folders named in ``skip`` (those another
    pack holds). Returns the split's entry of ``pack.json``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = split_dir / SYNTH_MANIFEST_NAME
    used, seconds, names = 0, 0.0, []
    if manifest.is_file():  # it travels too: counted against the budget
        shutil.copy2(manifest, out_dir / SYNTH_MANIFEST_NAME)
        used = manifest.stat().st_size
    pieces = list_pieces(split_dir)
    if most_players_first:
        pieces.sort(key=lambda piece: -len(piece.stem_paths))  # stable: in order within
    pieces = [piece for piece in pieces if piece.folder.name not in skip]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for piece in pieces:
            folder = out_dir / piece.folder.name
            folder.mkdir(exist_ok=True)
            jobs = [
                (str(path), str(folder / (path.stem + ".ogg")), level) for path in piece.stem_paths
            ]
            size = sum(pool.map(_encode_stem, jobs))
            for player in range(1, len(piece.stem_paths) + 1):  # what voice ranks read
                notes = piece.notes_path(player)
                if notes.is_file():
                    shutil.copy2(notes, folder / notes.name)
                    size += notes.stat().st_size
            if budget is not None and used + size > budget:
                shutil.rmtree(folder)
                break
            used += size
            names.append(piece.folder.name)
            seconds += sum(soundfile.info(path).duration for path in piece.stem_paths)
    return {"pieces": names, "stem_seconds": round(seconds, 1), "bytes": used}


def check_init(init: Path, config: Path) -> None:
    """Refuse, here rather than on the GPU after unpacking, weights the run's network cannot
    start from: not a checkpoint, or another network's (:func:`warm_start`'s own checks)."""
    from vimss_cli.errors import VimssError
    from vimss_cli.networks import build_network
    from vimss_cli.training.config import load_config
    from vimss_cli.training.warm_start import warm_start

    try:
        warm_start(build_network(load_config(config).model), str(init))
    except VimssError as error:
        raise SystemExit(f"error: --init {init}: {error}") from None


def pack(args: argparse.Namespace) -> None:
    """Build the pack (and with ``--more-out`` the second pack), each atomically
    (:func:`_build`)."""
    out = Path(args.out)
    data_root = Path(args.data).expanduser()
    config = Path(args.config).expanduser()
    if not (data_root / "train").is_dir():
        raise SystemExit(f"error: {data_root} has no train/ split (make one with vimss data synth)")
    if not config.is_file():
        raise SystemExit(f"error: --config {config}: no such file")
    if args.real_valid and not Path(args.real_valid).expanduser().is_dir():
        raise SystemExit(f"error: --real-valid {args.real_valid}: no such folder")
    if args.real_valid and not args.real_valid_mib > 0:
        raise SystemExit(f"error: --real-valid-mib must be more than 0, got {args.real_valid_mib}")
    init = Path(args.init).expanduser() if args.init else None
    if init is not None:
        if not init.is_file():
            raise SystemExit(f"error: --init {init}: no such file")
        check_init(init, config)
    if (out / "resume").exists():  # a returned GPU run (docs/training.md): never deleted here
        raise SystemExit(
            f"error: {out / 'resume'} holds a returned run, which packing would delete: "
            f"move it out of {out} first"
        )
    if args.more_out:
        check_second_pack_folder(Path(args.more_out), out, data_root)
    tree = travelling_tree_bytes(REPO, args.without_models)  # before the partial pack lies in it
    if args.more_out and Path(args.more_out).exists():  # it would overlap the new first pack
        shutil.rmtree(args.more_out)
    pack_id = uuid.uuid4().hex[:12]  # both packs carry it: the run joins only a matching pair
    entries = _build(
        out, lambda folder: _fill(folder, args, data_root, config, init, tree, pack_id)
    )
    more_entry = None
    if args.more_out:
        packed = frozenset(entries["train"]["pieces"])  # type: ignore[call-overload]
        more_entry = _build(
            Path(args.more_out),
            lambda folder: _fill_more(folder, args, data_root, tree, packed, pack_id),
        )
        info = json.loads((out / "pack.json").read_text())  # the first says what to expect
        info["second_pack_pieces"] = len(more_entry["train"]["pieces"])  # type: ignore[arg-type]
        write_text_atomically(out / "pack.json", json.dumps(info, indent=1))
    pack_size = folder_bytes(out)
    print(f"work tree that travels: {tree / MIB:.1f} MiB")
    for name, entry in entries.items():
        print(
            f"{name}: {len(entry['pieces'])} pieces, "  # type: ignore[arg-type]
            f"{float(entry['stem_seconds']) / 3600:.2f} h of "  # type: ignore[arg-type]
            f"stems, {float(entry['bytes']) / MIB:.1f} MiB"  # type: ignore[arg-type]
        )
    if (out / "wheels").is_dir():
        print(f"wheels: {folder_bytes(out / 'wheels') / MIB:.1f} MiB")
    if init is not None:
        print(f"init.safetensors (from {init}): {init.stat().st_size / MIB:.1f} MiB")
    print(
        f"pack {out}: {pack_size / MIB:.1f} MiB; everything that travels: "
        f"{(tree + pack_size) / MIB:.1f} MiB of {args.limit_mib:.0f}"
    )
    if more_entry is not None:
        more = Path(args.more_out)
        train = more_entry["train"]
        print(
            f"second pack {more} (a call of its own, just before the training call): "
            f"{len(train['pieces'])} more train pieces, "  # type: ignore[arg-type]
            f"{float(train['stem_seconds']) / 3600:.2f} h of stems; "  # type: ignore[arg-type]
            f"with the tree {(tree + folder_bytes(more)) / MIB:.1f} MiB of {args.limit_mib:.0f}"
        )
    if args.without_models:
        print(
            "packed for a tree without the bundled models' files: run `make device-lean` "
            "before the device call and `make device-restore` after it"
        )


def _build(
    out: Path, fill: Callable[[Path], dict[str, dict[str, object]]]
) -> dict[str, dict[str, object]]:
    """Run ``fill`` on ``OUT.partial`` and put it in place of ``out`` at the end, so a
    failure leaves an earlier pack as it was and never a half-built one."""
    building = out.with_name(out.name + ".partial")
    if building.exists():
        shutil.rmtree(building)
    building.mkdir(parents=True)
    try:
        entries = fill(building)
        if out.exists():
            shutil.rmtree(out)
        building.rename(out)
    finally:
        if building.exists():
            shutil.rmtree(building)
    return entries


def check_second_pack_folder(more: Path, out: Path, data_root: Path) -> None:
    """Refuse a ``--more-out`` folder that packing would wrongly delete: the first pack's or
    the data's (or one inside or holding either), one holding the repository, or an existing
    folder that is not an earlier second pack."""
    target = more.expanduser().resolve()

    def overlaps(other: Path) -> bool:
        return target == other or other in target.parents or target in other.parents

    first, data = out.expanduser().resolve(), data_root.expanduser().resolve()
    for other, what in ((first, "the first pack"), (data, "the data")):
        if overlaps(other):
            raise SystemExit(f"error: --more-out {more} overlaps {what} ({other})")
    if target == REPO or target in REPO.parents:
        raise SystemExit(f"error: --more-out {more} holds the repository; give a folder of its own")
    if target.exists() and any(target.iterdir()) and _pack_info(target).get("part") != 2:
        raise SystemExit(
            f"error: --more-out {more} exists and is not an earlier second pack: packing "
            "would delete it; give another folder"
        )


def _fill_more(
    out: Path,
    args: argparse.Namespace,
    data_root: Path,
    tree: int,
    packed: frozenset[str],
    pack_id: str,
) -> dict[str, dict[str, object]]:
    """The second pack: the train pieces the first could not hold, in piece order, as many as
    travel with the work tree alone (it goes in a device call of its own, which leaves it on
    the machine for the training call that follows; ``scripts/device_train.sh`` trains on
    both). No wheels, config or init: those are the first pack's."""
    budget = int(args.limit_mib * MIB) - tree
    if budget <= 0:
        raise SystemExit(f"error: no room for a second pack: the tree is {tree / MIB:.1f} MiB")
    entry = pack_split(
        data_root / "train", out / "data" / "train", args.level, budget, 2, skip=packed
    )
    info = {
        "part": 2,
        "pack_id": pack_id,
        "vorbis_compression_level": args.level,
        "source": str(data_root),
        "splits": {"train": entry},
    }
    (out / "pack.json").write_text(json.dumps(info, indent=1))
    return {"train": entry}


def _fill(
    out: Path,
    args: argparse.Namespace,
    data_root: Path,
    config: Path,
    init: Path | None,
    tree: int,
    pack_id: str,
) -> dict[str, dict[str, object]]:
    """Write the pack's files into ``out``; return what each split holds."""
    shutil.copy2(config, out / "config.toml")
    if init is not None:
        shutil.copy2(init, out / "init.safetensors")
    if not args.no_wheels:
        download_wheels(out / "wheels")
    limit = int(args.limit_mib * MIB)
    entries: dict[str, dict[str, object]] = {}
    valid_dir = data_root / "valid"
    if valid_dir.is_dir():
        entries["valid"] = pack_split(valid_dir, out / "data" / "valid", args.level, None, 2)
    if args.real_valid:  # real recordings to validate on: out/realval/<name>/
        real = Path(args.real_valid).expanduser().resolve()
        budget = int(args.real_valid_mib * MIB)
        target = out / "realval" / real.name
        entries["realval"] = pack_split(real, target, args.level, budget, 2, True)
        if not entries["realval"]["pieces"]:
            raise SystemExit(
                f"error: --real-valid {args.real_valid}: no piece fits in --real-valid-mib "
                f"{args.real_valid_mib:g}"
            )
    budget = limit - tree - folder_bytes(out)
    if budget <= 0:
        raise SystemExit(
            f"error: no room for training data within --limit-mib {args.limit_mib:g}: the tree "
            f"is {tree / MIB:.1f} MiB and the config, wheels, valid split and init "
            f"{folder_bytes(out) / MIB:.1f} MiB"
        )
    train_out = out / "data" / "train"
    for extra in args.extra_train or []:  # e.g. real solo recordings: packed before the synth
        entry = pack_split(Path(extra).expanduser(), train_out, args.level, budget, 2)
        entries[f"train_extra:{Path(extra).name}"] = entry
        budget -= int(entry["bytes"])  # type: ignore[call-overload]
    entries["train"] = pack_split(data_root / "train", train_out, args.level, budget, 2)
    info = {
        "pack_id": pack_id,
        "vorbis_compression_level": args.level,
        "source": str(data_root),
        "init": None if init is None else str(init),
        "splits": entries,
    }
    (out / "pack.json").write_text(json.dumps(info, indent=1))
    return entries


def _decode_stem(job: tuple[str, str]) -> None:
    source, target = job
    samples, rate = soundfile.read(source, dtype="float32", always_2d=False)
    with atomic_path(Path(target)) as temporary:
        soundfile.write(str(temporary), samples, rate, format="WAV", subtype="FLOAT")


def unpack(args: argparse.Namespace) -> None:
    """Decode every ``.ogg`` stem under the pack's data folder into float WAV files."""
    source, target = Path(args.pack), Path(args.out)
    jobs = []
    for split in sorted(p for p in source.iterdir() if p.is_dir()):
        for piece in sorted(p for p in split.iterdir() if p.is_dir()):
            folder = target / split.name / piece.name
            folder.mkdir(parents=True, exist_ok=True)
            jobs += [(str(s), str(folder / (s.stem + ".wav"))) for s in sorted(piece.glob("*.ogg"))]
            for notes in sorted(piece.glob("Notes_*.txt")):
                shutil.copy2(notes, folder / notes.name)
        manifest = split / SYNTH_MANIFEST_NAME
        if manifest.is_file():
            (target / split.name).mkdir(parents=True, exist_ok=True)
            shutil.copy2(manifest, target / split.name / SYNTH_MANIFEST_NAME)
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        list(pool.map(_decode_stem, jobs, chunksize=8))
    print(f"unpacked {len(jobs)} stems into {target}")


def _pack_info(folder: Path) -> dict[str, object]:
    """A pack's ``pack.json`` (empty when missing or unreadable)."""
    try:
        info = json.loads((folder / "pack.json").read_text())
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def second_pack_status(first: Path, more: Path | None) -> str:
    """What ``device_train.sh`` logs of the second pack ``more`` beside the first pack
    ``first`` (``None``: none looked for). Only a line starting ``second pack`` means it joins:
    it was packed with the first (the same ``pack_id``); one of another packing (stale, on a
    warm machine) does not, nor a missing one, which the first says it expected."""
    first_info = _pack_info(first)
    if more is not None and (more / "data").is_dir():
        pack_id = first_info.get("pack_id")
        if pack_id and _pack_info(more).get("pack_id") == pack_id:
            return f"second pack {more}: its train pieces join the first pack's"
        return (
            f"warning: second pack {more} is of another packing than {first} (pack_id): not "
            f"used; training on {first}'s data alone"
        )
    expected = first_info.get("second_pack_pieces", 0)
    if expected:
        return (
            f"warning: no second pack ({'none looked for' if more is None else more / 'data'}) "
            f"though {first} was packed with one of "
            f"{expected} pieces (did the ferry call run just before?): training on {first}'s "
            "data alone"
        )
    return f"no second pack: training on {first}'s data alone"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("pack", help="build the folder to carry")
    p.add_argument("--data", required=True, help="URMP-layout root with train/ (and valid/)")
    p.add_argument("--config", default=str(REPO / "configs" / "gpu-h200.toml"))
    p.add_argument("--out", default=str(REPO / ".device"))
    p.add_argument(
        "--extra-train", action="append", help="more piece folders for train/ (repeatable)"
    )
    p.add_argument(
        "--init",
        help="weights to start from, carried as init.safetensors (e.g. a returned "
        "last.safetensors); the training data shrinks to make room",
    )
    p.add_argument(
        "--real-valid",
        help="a URMP-layout folder of real recordings the run validates on (run.real_valid), "
        "most players first, within --real-valid-mib",
    )
    p.add_argument(
        "--real-valid-mib",
        type=float,
        default=DEFAULT_REAL_VALID_MIB,
        help="what the real recordings may take of the pack (MiB)",
    )
    p.add_argument("--level", type=float, default=DEFAULT_VORBIS_LEVEL, help="Vorbis 0 (best)-1")
    p.add_argument("--limit-mib", type=float, default=TRAVEL_LIMIT_MIB - 4.0)
    p.add_argument("--no-wheels", action="store_true", help="skip the wheels (CPU dry run)")
    p.add_argument(
        "--more-out",
        help="also build a second pack here (e.g. .device-more): the train pieces the first "
        "could not hold, carried by a device call of its own just before the training call",
    )
    p.add_argument(
        "--without-models",
        action="store_true",
        help="size the pack for a work tree without models/*.safetensors (make device-lean "
        "removes them for the run; git keeps them): about 3x the training music",
    )
    u = commands.add_parser("unpack", help="decode a pack's stems into a URMP-layout tree")
    u.add_argument("pack", help="the pack's data folder")
    u.add_argument("out", help="where to write the tree")
    u.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    m = commands.add_parser("second", help="say whether a second pack joins the first")
    m.add_argument("first", help="the first pack")
    m.add_argument("more", help="where the second pack would be (none: nowhere)")
    args = parser.parse_args()
    if args.command == "second":
        print(
            second_pack_status(Path(args.first), None if args.more == "none" else Path(args.more))
        )
    else:
        pack(args) if args.command == "pack" else unpack(args)


if __name__ == "__main__":
    main()
