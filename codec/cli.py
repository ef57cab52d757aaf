"""The `aec` command (and `aec-encode`, `aec-decode`, `python -m codec`).

    aec encode IN [-o OUT.aec] [--kbps K]        audio -> .aec
    aec decode IN.aec [-o OUT.wav|.flac]         .aec -> audio
    aec info FILE.aec [--json]                   header, sizes and rates
    aec roundtrip IN [--kbps K] [-o dec.wav]     encode + decode + quality report
    aec embed IN [-o OUT.npy] [--pool mean]      the latent as features (.npy)
    aec train ...                                train a model (codec.train)

'-' reads stdin or writes stdout. This is the only module that prints or exits:
every `AecError` (and `OSError`) becomes one line `aec: error: ...` on stderr and
the exit code of its class (see `codec.errors`); nothing else is caught.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from codec import __version__
from codec.errors import AecError, InputError, OutputError, UsageError

if TYPE_CHECKING:
    from codec.api import Codec, DecodeReport, EncodeReport

__all__ = ["main", "main_encode", "main_decode", "build_parser", "EXIT_CODES_HELP"]

EXIT_CODES_HELP = """exit codes:
  0 success             1 internal error (bug)    2 bad usage
  3 input missing       4 malformed .aec          5 damaged chunk (CRC)
  6 newer .aec version  7 weights missing/wrong   8 unsupported audio
  9 output exists (-f)  10 output not writable    11 device not available
"""
#: Show a progress bar only once a job has run this long (and only on a terminal).
PROGRESS_DELAY_SECONDS = 0.25
DEFAULT_KBPS = 6.0
# One torch thread: measured on 2 cores, a second thread gained at most 6 % on idle cores
# (bench/results/speed.md history) and made in-process encoding 20x slower on busy ones
# (README, "Command line").
DEFAULT_THREADS = 1
DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"
#: Signals that end a run like Ctrl-C does: temporary files are removed first.
_TERMINATING_SIGNALS = ("SIGTERM", "SIGHUP")


# ---------------------------------------------------------------- parser


def _kbps(text: str) -> float:
    """argparse type for --kbps: a positive, finite number."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    """argparse type for --threads: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _device(text: str) -> str:
    """argparse type for --device: auto, cpu, cuda or cuda:N (exact spelling)."""
    if text in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", text):
        return text
    raise argparse.ArgumentTypeError(f"invalid device {text!r} (choose {DEVICE_CHOICES})")


def _ratio(text: str) -> float:
    """argparse type for --max-ratio: a number >= 0 (0: no cap)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value


def _add_common(parser: argparse.ArgumentParser, *, model: bool = True,
                output: bool = True) -> None:
    """Options shared by the subcommands that load a model or write a file."""
    if model:
        parser.add_argument("--device", default="auto", type=_device,
                            help="auto (cuda if available), cpu, cuda or cuda:N (default: auto)")
        parser.add_argument("--weights", metavar="PATH", default=None,
                            help="model weights to use (default: the shipped aec-base)")
        parser.add_argument("--threads", type=_positive_int, default=DEFAULT_THREADS,
                            metavar="N",
                            help=f"CPU threads for torch (default: {DEFAULT_THREADS}; the "
                                 "networks are small, so more threads gain little on idle "
                                 "cores and can be 10-20x slower on busy ones)")
    if output:
        parser.add_argument("-f", "--force", action="store_true",
                            help="overwrite the output if it exists")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="print nothing but errors (and requested --json)")


def _add_encode(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("encode", help="encode audio to .aec",
                       description="Encode an audio file (wav, flac, ogg, ...) to .aec.",
                       epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", metavar="IN", help="audio file, or - for stdin")
    p.add_argument("-o", "--output", metavar="OUT.aec",
                   help="output (default: IN with .aec; stdout if IN is -)")
    p.add_argument("--kbps", type=_kbps, default=DEFAULT_KBPS,
                   help=f"target rate; picks the highest rate point not above it "
                        f"(default: {DEFAULT_KBPS:g})")
    p.add_argument("--strict", action="store_true",
                   help="fail (exit 8) on a truncated input instead of warning")
    p.add_argument("--denoise", action="store_true",
                   help="encode with the denoising encoder (same stream; exit 7 if the "
                        "weights carry none)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    _add_common(p)
    p.set_defaults(run=run_encode)


def _add_decode(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("decode", help="decode .aec to wav/flac",
                       description="Decode an .aec file to wav or flac (by extension).",
                       epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", metavar="IN.aec", help=".aec file, or - for stdin")
    p.add_argument("-o", "--output", metavar="OUT.wav",
                   help="output .wav or .flac (default: IN with .wav; stdout if IN is -)")
    p.add_argument("--ignore-errors", action="store_true",
                   help="conceal damaged chunks with silence instead of failing")
    p.add_argument("--sample-format", choices=("pcm16", "pcm24", "float"), default="pcm16",
                   help="output samples (float: wav only; default: pcm16)")
    p.add_argument("--max-ratio", type=_ratio, default=None, metavar="R",
                   help="decompression-bomb cap: model-rate samples (all channels) per "
                        "stream byte (default: 4096; 0: no cap)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    _add_common(p)
    p.set_defaults(run=run_decode)


def _add_info(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("info", help="show an .aec file's header, sizes and rates",
                       description="Show an .aec file's header, sizes and rates (no model needed).",
                       epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", metavar="FILE.aec", help=".aec file, or - for stdin")
    p.add_argument("--check", action="store_true",
                   help="verify (like flac -t): walk every chunk and the trailer, check the "
                        "header's sample count; exit 4/5 on any damage")
    p.add_argument("--json", action="store_true", help="print JSON")
    _add_common(p, model=False, output=False)
    p.set_defaults(run=run_info)


def _add_roundtrip(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("roundtrip", help="encode + decode, report rate, quality and speed",
                       description="Encode and decode IN in memory; report the measured rate, "
                                   "SNR, SI-SDR and mel distance against IN, and speed.",
                       epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", metavar="IN", help="audio file, or - for stdin")
    p.add_argument("--kbps", type=_kbps, default=DEFAULT_KBPS,
                   help=f"target rate (default: {DEFAULT_KBPS:g})")
    p.add_argument("-o", "--output", metavar="DECODED.wav",
                   help="also write the decoded audio (- for stdout: the report goes to stderr)")
    p.add_argument("--strict", action="store_true",
                   help="fail (exit 8) on a truncated input instead of warning")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    _add_common(p)
    p.set_defaults(run=run_roundtrip)


def _add_embed(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("embed", help="write the encoder's latent as features (.npy)",
                       description="Write the encoder's latent of IN as float32 features in "
                                   "a .npy file (see codec.embed: logpower = dB per MDCT "
                                   "coefficient, at the model's frame rate).",
                       epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", metavar="IN", help="audio file, or - for stdin")
    p.add_argument("-o", "--output", metavar="OUT.npy", help="output (default: IN with .npy)")
    p.add_argument("--pool", choices=("none", "mean", "meanstd"), default="none",
                   help="pool over time: none [frames, dims], mean [dims], meanstd [2*dims] "
                        "(a leading channel axis for multichannel input; default: none)")
    p.add_argument("--feature", choices=("logpower", "latent"), default="logpower",
                   help="logpower: 10 log10(y^2 + 1e-10) per coefficient; latent: y itself "
                        "(default: logpower)")
    p.add_argument("--json", action="store_true", help="print the header as JSON")
    _add_common(p)
    p.set_defaults(run=run_embed)


def _add_generate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("generate", help="generate or continue audio with the context model",
                       description="Sample audio with the context model (codec/context): "
                                   "unconditionally, or continuing --prompt (the output then "
                                   "starts with the prompt's 6 kbps decoded audio).",
                       epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=_ratio, required=True,
                   help="seconds to generate (after the prompt, if any)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("-o", "--output", metavar="OUT.wav", required=True,
                   help="output .wav or .flac (- for a wav on stdout)")
    p.add_argument("--prompt", metavar="IN", default=None, help="audio to continue")
    p.add_argument("--temperature", type=float, default=1.0,
                   help="divide the model's logits by this (default: 1.0)")
    p.add_argument("--context-weights", metavar="PATH", default=None,
                   help="context model .safetensors (default: the shipped one)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    _add_common(p)
    p.set_defaults(run=run_generate)


def _add_train(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("train", help="train a model (see aec train --help)", add_help=False)
    p.add_argument("args", nargs=argparse.REMAINDER)
    p.set_defaults(run=None)


def build_parser() -> argparse.ArgumentParser:
    """The `aec` parser: one builder function per subcommand."""
    parser = argparse.ArgumentParser(
        prog="aec", description="aec: a neural audio codec.", epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"aec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in (_add_encode, _add_decode, _add_info, _add_roundtrip, _add_embed,
                _add_generate, _add_train):
        add(sub)
    return parser


# ---------------------------------------------------------------- helpers


def _label(path: str, stdin: bool) -> str:
    return path if path != "-" else ("<stdin>" if stdin else "<stdout>")


def _say(args: argparse.Namespace, text: str) -> None:
    """Human-readable output goes to stderr, so stdout stays clean for data and JSON."""
    if not args.quiet:
        print(text, file=sys.stderr)


def _print_json(data: dict[str, Any], to_stderr: bool = False) -> None:
    print(json.dumps(data, indent=2), file=sys.stderr if to_stderr else sys.stdout)


def default_output(input_path: str, suffix: str) -> str:
    """x.wav -> x.aec next to the input (x.aec -> x.wav); '-' stays stdout."""
    if input_path == "-":
        return "-"
    return str(Path(input_path).with_suffix(suffix))


def _refuse_terminal(output: str) -> None:
    if output == "-" and sys.stdout.isatty():
        raise OutputError("refusing to write binary data to a terminal (use -o or redirect)")


def _check_paths(args: argparse.Namespace, output: str | None) -> None:
    """Fail fast, before the model loads: missing input (3), output == input (2),
    existing output (9)."""
    from codec.api import check_not_input, check_output

    if args.input != "-" and not os.path.exists(args.input):
        raise InputError(f"{args.input}: no such file")
    if output is not None:
        _refuse_terminal(output)
        check_not_input(args.input, output)
        if output != "-":
            check_output(Path(output), args.force)


def _load_codec(args: argparse.Namespace, need_encoder: bool = True) -> Codec:
    from codec.api import Codec

    import torch

    torch.set_num_threads(args.threads)
    return Codec.load(args.weights, device=args.device, need_encoder=need_encoder)


@dataclass
class _Progress:
    """A tqdm bar on stderr for jobs that run over PROGRESS_DELAY_SECONDS on a terminal.

    The total comes with the first callback (the header or the input says it), so
    nothing is read twice to size the bar, and stdin input gets one too.
    """

    enabled: bool
    desc: str
    bar: Any = None

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total <= 0:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=self.desc, unit="smp", unit_scale=True,
                            leave=False, file=sys.stderr, delay=PROGRESS_DELAY_SECONDS)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _progress(args: argparse.Namespace, desc: str) -> _Progress:
    return _Progress(not args.quiet and sys.stderr.isatty(), desc)


def _warn(args: argparse.Namespace, warnings: Sequence[str]) -> None:
    """Warnings go to stderr as `aec: warning: ...` lines (silenced by -q)."""
    for line in warnings:
        if not args.quiet:
            print(f"aec: warning: {line}", file=sys.stderr)


# ---------------------------------------------------------------- reports


def _format_request(d: dict[str, Any]) -> str:
    """'6 kbps requested' (any-rate models) or 'point 1 (6 kbps nominal)' (rate points)."""
    if d["rate_point"] < 0:
        return f"{d['nominal_kbps']:g} kbps requested"
    return f"point {d['rate_point']} ({d['nominal_kbps']:g} kbps nominal)"


def _encode_dict(report: EncodeReport) -> dict[str, Any]:
    return {
        "duration_s": round(report.duration_s, 6), "sample_rate": report.sample_rate,
        "channels": report.channels, "num_samples": report.num_samples,
        "rate_point": report.rate_point, "nominal_kbps": report.nominal_kbps,
        "channel_kbps": [round(k, 4) for k in report.channel_kbps],
        "mid_side_chunks": report.mid_side_chunks,
        "size_bytes": report.size_bytes, "payload_bytes": report.payload_bytes,
        "kbps": round(report.kbps, 4), "payload_kbps": round(report.payload_kbps, 4),
        "encode_seconds": round(report.seconds, 4), "encode_realtime": _finite(report.realtime),
        "device": report.device,
    }


def _decode_dict(report: DecodeReport) -> dict[str, Any]:
    return {
        "duration_s": round(report.duration_s, 6), "sample_rate": report.sample_rate,
        "channels": report.channels, "num_samples": report.num_samples,
        "rate_point": report.rate_point, "size_bytes": report.size_bytes,
        "payload_bytes": report.payload_bytes, "damaged_chunks": list(report.damaged_chunks),
        "decode_seconds": round(report.seconds, 4), "decode_realtime": _finite(report.realtime),
        "device": report.device,
    }


def _finite(value: float) -> float | None:
    """JSON has no infinity: None stands for +-inf (too fast to time, perfect, silent)."""
    return round(value, 3) if value == value and abs(value) != float("inf") else None


def _format_rate(d: dict[str, Any]) -> str:
    return (f"{d['size_bytes']} bytes, {d['kbps']:.3f} kbps "
            f"(payload {d['payload_bytes']} bytes, {d['payload_kbps']:.3f} kbps)")


def _format_audio(d: dict[str, Any]) -> str:
    return (f"{d['duration_s']:.3f} s, {d['sample_rate']} Hz, {d['channels']} ch, "
            f"{d['num_samples']} samples")


def _format_speed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}x real time"


# ---------------------------------------------------------------- subcommands


def run_encode(args: argparse.Namespace) -> int:
    """`aec encode`: stream an audio file into an .aec file and report the real rate."""
    output = args.output or default_output(args.input, ".aec")
    _check_paths(args, output)
    codec = _load_codec(args)
    progress = _progress(args, "encode")
    try:
        report = codec.encode_file(args.input, output, args.kbps, overwrite=args.force,
                                   progress=progress, strict=args.strict,
                                   denoise=args.denoise)
    finally:
        progress.close()
    _warn(args, report.warnings)
    data = _encode_dict(report) | {"input": args.input, "output": output,
                                   "denoise": args.denoise}
    if args.json:
        _print_json(data, to_stderr=output == "-")
    else:
        _say(args, f"{_label(args.input, True)} -> {_label(output, False)}\n"
                   f"  audio:  {_format_audio(data)}\n"
                   f"  rate:   {_format_request(data)}; "
                   f"{_format_rate(data)}\n"
                   f"  speed:  {_format_speed(data['encode_realtime'])} on {data['device']}")
    return 0


def run_decode(args: argparse.Namespace) -> int:
    """`aec decode`: stream an .aec file into wav/flac; --ignore-errors conceals damage."""
    from codec.audio import output_format

    output = args.output or default_output(args.input, ".wav")
    _check_paths(args, output)
    output_format(output, args.sample_format)
    codec = _load_codec(args, need_encoder=False)
    progress = _progress(args, "decode")
    ratio = {} if args.max_ratio is None else {"max_ratio": args.max_ratio}
    try:
        report = codec.decode_file(args.input, output, overwrite=args.force,
                                   ignore_errors=args.ignore_errors,
                                   sample_format=args.sample_format, progress=progress,
                                   **ratio)
    finally:
        progress.close()
    data = _decode_dict(report) | {"input": args.input, "output": output}
    if args.json:
        _print_json(data, to_stderr=output == "-")
    else:
        damaged = report.damaged_chunks
        _say(args, f"{_label(args.input, True)} -> {_label(output, False)}\n"
                   f"  audio:  {_format_audio(data)}\n"
                   f"  speed:  {_format_speed(data['decode_realtime'])} on {data['device']}"
                   + (f"\n  concealed damaged chunks: {list(damaged)}" if damaged else ""))
    return 0


def info_dict(fileobj: BinaryIO) -> dict[str, Any]:
    """Header fields (spec names) plus sizes, rates and damaged chunks of an .aec stream.

    Reads chunk by chunk (CRC-checked, payloads not decoded), so any size is fine.
    """
    from codec import format
    from codec.metrics import bitrate_kbps

    start = fileobj.tell()
    reader = format.StreamReader(fileobj)
    header = reader.header
    payload_bytes, damaged = 0, []
    for chunk in reader.chunks(ignore_errors=True):
        if chunk.payload is None:
            damaged.append(chunk.index)
        else:
            payload_bytes += len(chunk.payload)
    size_bytes = fileobj.seek(0, io.SEEK_END) - start
    fields = {name: getattr(header, name) for name in header.__dataclass_fields__}
    fields["model_sha256"] = header.model_sha256.hex()
    fields["metadata"] = [{"kind": m.kind, "size_bytes": len(m.payload)} for m in header.metadata]
    rate = header.sample_rate
    return fields | {
        "num_chunks": header.num_chunks,
        "duration_s": header.num_samples / rate,
        "size_bytes": size_bytes, "payload_bytes": payload_bytes,
        "kbps": round(bitrate_kbps(size_bytes, header.num_samples, rate), 4),
        "payload_kbps": round(bitrate_kbps(payload_bytes, header.num_samples, rate), 4),
        "damaged_chunks": damaged,
    }


def _open_aec_input(path: str) -> BinaryIO:
    """An .aec input as a seekable binary file ('-', pipes and FIFOs: read into memory)."""
    if path == "-":
        return io.BytesIO(sys.stdin.buffer.read())
    if os.path.isdir(path):
        raise InputError(f"{path}: is a directory")
    try:
        if os.path.exists(path) and not os.path.isfile(path):
            with open(path, "rb") as pipe:            # /dev/fd/N, a FIFO: cannot seek
                return io.BytesIO(pipe.read())
        return open(path, "rb")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None


def verify_stream(fileobj: BinaryIO) -> None:
    """`info --check`: every chunk (CRC) and the trailer strictly, and the header's
    sample count against its frames; raises the first problem (exit 4 or 5).

    Payloads are not entropy-decoded (that needs the weights: `aec decode` does it).
    """
    from codec import format

    start = fileobj.tell()
    reader = format.StreamReader(fileobj)
    format.check_sample_count(reader.header)
    for _ in reader.chunks():
        pass
    fileobj.seek(start)


def run_info(args: argparse.Namespace) -> int:
    """`aec info`: header, sizes and rates, without loading a model (no torch)."""
    with _open_aec_input(args.input) as fileobj:
        if args.check:
            verify_stream(fileobj)
        fields = info_dict(fileobj)
    if args.check:
        fields["check"] = "ok"
    if args.json:
        _print_json(fields)
        return 0
    if not args.quiet:
        width = max(len(k) for k in fields)
        print(f"{_label(args.input, True)}:")
        for key, value in fields.items():
            print(f"  {key:<{width}}  {value}")
    return 0


def run_roundtrip(args: argparse.Namespace) -> int:
    """`aec roundtrip`: encode + decode, streaming; rate, quality and speed vs the input."""
    from codec.audio import output_format
    from codec.roundtrip import roundtrip

    _check_paths(args, args.output)
    if args.output:
        output_format(args.output)
    codec = _load_codec(args)
    codec.warm_up()                      # report steady-state speed, not first-call setup
    encode_bar, decode_bar = _progress(args, "encode"), _progress(args, "decode")
    try:
        report = roundtrip(codec, args.input, args.kbps, output=args.output,
                           overwrite=args.force, strict=args.strict,
                           encode_progress=encode_bar, decode_progress=decode_bar)
    finally:
        encode_bar.close()
        decode_bar.close()
    _warn(args, report.encode.warnings)
    quality = {"snr_db": report.snr_db, "si_sdr_db": report.si_sdr_db}
    data = _encode_dict(report.encode) | {
        "input": args.input,
        "snr_db": _finite(report.snr_db),
        "si_sdr_db": _finite(report.si_sdr_db),
        "mel_distance": round(report.mel_distance, 4),
        "decode_seconds": round(report.decode.seconds, 4),
        "decode_realtime": _finite(report.decode.realtime),
    }
    _report_roundtrip(args, data, quality, to_stderr=args.output == "-")
    return 0


def _report_roundtrip(args: argparse.Namespace, data: dict[str, Any],
                      quality: dict[str, float], to_stderr: bool) -> None:
    """The report, on stdout unless stdout carries the decoded audio (`-o -`)."""
    if args.json:
        _print_json(data, to_stderr=to_stderr)
        return
    if args.quiet:
        return
    print(f"{data['input']}: {_format_audio(data)}\n"
          f"  rate:     {_format_request(data)}; "
          f"{_format_rate(data)}\n"
          f"  quality:  SNR {_db(quality['snr_db'])}, SI-SDR {_db(quality['si_sdr_db'])}, "
          f"mel distance {data['mel_distance']:.4f}\n"
          f"  speed:    encode {_format_speed(data['encode_realtime'])}, "
          f"decode {_format_speed(data['decode_realtime'])} on {data['device']}",
          file=sys.stderr if to_stderr else sys.stdout)


def run_embed(args: argparse.Namespace) -> int:
    """`aec embed`: the latent of an audio file as a float32 .npy; --json prints its header."""
    output = args.output or default_output(args.input, ".npy")
    if output == "-":
        raise UsageError("embed writes a .npy file; give its path with -o (not -)")
    _check_paths(args, output)
    report = _load_codec(args).embed_file(args.input, output, pool=args.pool,
                                          feature=args.feature, overwrite=args.force)
    data = {"input": args.input, "output": output, "shape": list(report.shape),
            "dtype": "float32", "layout": report.layout, "frame_rate": report.frame_rate,
            "dims": report.dims, "num_frames": report.num_frames, "channels": report.channels,
            "channel_axis": report.channels > 1, "feature": report.feature,
            "pool": report.pool, "model": report.model, "sample_rate": report.sample_rate,
            "duration_s": round(report.duration_s, 6), "seconds": round(report.seconds, 4)}
    if args.json:
        _print_json(data)
    else:
        _say(args, f"{_label(args.input, True)} -> {output}: {report.layout} = "
                   f"{tuple(report.shape)} float32, {report.feature}, pool {report.pool}, "
                   f"{report.frame_rate:g} frames/s")
    return 0


def run_generate(args: argparse.Namespace) -> int:
    """`aec generate`: sample (or continue --prompt) into wav/flac, atomically."""
    from codec.api import check_not_input, check_output
    from codec.audio import output_format
    from codec.context.generate import generate_file

    _refuse_terminal(args.output)
    output_format(args.output)
    if args.prompt is not None:
        if args.prompt != "-" and not os.path.exists(args.prompt):
            raise InputError(f"{args.prompt}: no such file")
        check_not_input(args.prompt, args.output)
    if args.output != "-":
        check_output(Path(args.output), args.force)
    codec = _load_codec(args, need_encoder=args.prompt is not None)
    data = generate_file(codec, args.output, args.seconds, args.seed, args.prompt,
                         args.temperature, args.force, args.context_weights,
                         progress=not args.quiet and sys.stderr.isatty())
    if args.json:
        _print_json(data, to_stderr=args.output == "-")
    else:
        _say(args, f"-> {_label(args.output, False)}: {data['seconds']:g} s at "
                   f"{data['sample_rate']} Hz (seed {args.seed}, temperature "
                   f"{args.temperature:g}), {_format_speed(data['realtime'])}")
    return 0


def _db(value: float) -> str:
    return f"{value:+.0f} dB" if abs(value) == float("inf") else f"{value:.2f} dB"


def run_train(argv: Sequence[str]) -> int:
    """Hand `aec train ...` to the training package, imported only when asked for.

    The contract names `codec.train.main(argv)`; the package ships it as
    `codec/train/__main__.py` (so `python -m codec.train` works), so take either.
    """
    import importlib

    import codec.train as train

    out = _check_train_paths(argv)
    entry: Any = getattr(train, "main", None)
    if entry is None or not callable(entry):
        entry = importlib.import_module("codec.train.__main__").main
    try:
        result = entry(list(argv))
    except ValueError as exc:            # the trainer's own checks (e.g. no audio found)
        _remove_if_only_config(out)
        raise UsageError(f"train: {exc}") from None
    return int(result or 0)


def _check_train_paths(argv: Sequence[str]) -> Path | None:
    """--data folders must exist (exit 3) before the trainer makes its run folder.

    Returns the --out folder if this run is about to create it, else None.
    """
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--data", nargs="+", default=[])
    parser.add_argument("--out", default=None)
    known, _ = parser.parse_known_args(list(argv))
    for folder in known.data:
        if not os.path.isdir(folder):
            raise InputError(f"{folder}: no such folder (--data)")
    if known.out is None or os.path.exists(known.out):
        return None
    return Path(known.out)


def _remove_if_only_config(out: Path | None) -> None:
    """Take back a run folder this run created when it holds nothing but its config."""
    if out is not None and out.is_dir() and {p.name for p in out.iterdir()} <= {
            "train_config.json"}:
        for child in out.iterdir():
            child.unlink()
        out.rmdir()


# ---------------------------------------------------------------- entry points


def _fail(message: str, code: int, traceback: bool = False) -> int:
    """One line on stderr (plus the traceback of a bug when AEC_TRACEBACK=1 is set)."""
    if traceback and os.environ.get("AEC_TRACEBACK") == "1":
        import traceback as tb

        tb.print_exc()
    print(f"aec: error: {message}", file=sys.stderr)
    return code


def _os_error_code(exc: OSError) -> int:
    """An OSError that our code did not classify: missing things are input errors (3),
    everything else (permission, full disk, broken pipe) is an output error (10)."""
    return InputError.exit_code if isinstance(exc, FileNotFoundError) else OutputError.exit_code


class _Terminated(BaseException):
    """Raised by the SIGTERM/SIGHUP handler, so cleanup runs as for Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_terminated(signum: int, frame: object) -> None:
    raise _Terminated(signum)


def _install_signal_handlers() -> dict[int, Any]:
    """SIGTERM/SIGHUP -> _Terminated in the main thread; returns the previous handlers."""
    import threading

    previous: dict[int, Any] = {}
    if threading.current_thread() is not threading.main_thread():
        return previous
    for name in _TERMINATING_SIGNALS:
        number = getattr(signal, name, None)
        if number is not None:
            previous[number] = signal.signal(number, _raise_terminated)
    return previous


def main(argv: Sequence[str] | None = None) -> int:
    """`aec`: parse, run one subcommand, map errors to exit codes.

    SIGTERM and SIGHUP end the run like Ctrl-C: temporary outputs are removed, one
    line goes to stderr, and the exit code is 128 + the signal number.
    """
    previous = _install_signal_handlers()
    try:
        return _main(list(sys.argv[1:] if argv is None else argv))
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _main(args_list: list[str]) -> int:
    try:
        if args_list[:1] == ["train"]:
            return run_train(args_list[1:])
        args = build_parser().parse_args(args_list)
        run: Callable[[argparse.Namespace], int] = args.run
        return run(args)
    except AecError as exc:
        return _fail(str(exc), exc.exit_code)
    except BrokenPipeError:
        # The reader went away (e.g. `aec decode x.aec -o - | head`): stay quiet.
        _silence_stdout()
        return OutputError.exit_code
    except OSError as exc:
        return _fail(str(exc), _os_error_code(exc))
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except _Terminated as exc:
        return _fail(f"terminated by {signal.Signals(exc.signum).name}", 128 + exc.signum)
    except Exception as exc:  # noqa: BLE001 - a bug still gets one line and exit 1
        return _fail(f"internal error: {type(exc).__name__}: {exc} (please report it; "
                     f"AEC_TRACEBACK=1 shows the traceback)", 1, traceback=True)


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass


def main_encode(argv: Sequence[str] | None = None) -> int:
    """`aec-encode ...` = `aec encode ...`."""
    return main(["encode", *(sys.argv[1:] if argv is None else argv)])


def main_decode(argv: Sequence[str] | None = None) -> int:
    """`aec-decode ...` = `aec decode ...`."""
    return main(["decode", *(sys.argv[1:] if argv is None else argv)])
