"""Pickle-based files: report the imports their opcodes would perform, without ever unpickling them.

Only `pickletools.genops` walks the bytes: GLOBAL / INST carry "module name" directly, STACK_GLOBAL takes the
two strings pushed before it (resolved through the memo, as picklescan and modelscan do). A torch zip
checkpoint is read by HTTP range: the zip's end records and central directory, then each `*.pkl` member only
(bounded), never the tensor data. Legacy torch files and raw pickles are read from the start up to a byte
budget.
"""

from __future__ import annotations

import io
import pickletools
import re
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

from registry import finding_codes as codes
from registry.schema import Finding, Severity
from scanners.paths import display_path

SCANNER = "pickles"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".joblib", ".dill", ".mar", ".pt2")
DEFAULT_BUDGET = 8 * 1024 * 1024
MAX_PICKLES_PER_FILE = 5  # legacy torch.save: magic, protocol, sys_info, the object, storage keys
MAX_ZIP_MEMBERS = 4
ZIP_MAGIC = b"PK\x03\x04"

RangeReader = Callable[[int, int], bytes]

# module -> names considered dangerous ("*" = the whole module).
_DANGEROUS: dict[str, frozenset[str]] = {
    **{
        m: frozenset({"*"})
        for m in (
            "os",
            "posix",
            "nt",
            "subprocess",
            "sys",
            "runpy",
            "socket",
            "shutil",
            "pty",
            "importlib",
            "pickle",
            "_pickle",
            "marshal",
            "code",
            "codeop",
            "webbrowser",
            "requests",
            "httpx",
            "urllib",
            "urllib2",
            "urllib.request",
            "http.client",
            "ftplib",
            "telnetlib",
            "smtplib",
            "asyncio",
            "ctypes",
            "cffi",
            "multiprocessing",
            "threading",
            "signal",
            "pathlib",
            "glob",
            "inspect",
            "dill",
            "cloudpickle",
            "_io",
            "io",
            "zipimport",
            "bdb",
            "pdb",
            "timeit",
            "trace",
            "profile",
            "cProfile",
            "distutils",
            "pip",
            "setuptools",
            "tempfile",
            "platform",
            "commands",
            "popen2",
            "pydoc",
            "torch.hub",
            "torch.jit",
            "torch.package",
            "numpy.testing._private.utils",
            "builtins.__import__",
        )
    },
    "builtins": frozenset(
        {
            "eval",
            "exec",
            "compile",
            "open",
            "__import__",
            "getattr",
            "setattr",
            "delattr",
            "globals",
            "locals",
            "vars",
            "input",
            "breakpoint",
            "help",
            "exit",
            "quit",
            "memoryview",
            "__loader__",
            "__builtins__",
        }
    ),
    "__builtin__": frozenset(
        {
            "eval",
            "exec",
            "compile",
            "open",
            "__import__",
            "getattr",
            "setattr",
            "execfile",
            "file",
            "input",
            "globals",
        }
    ),
    "operator": frozenset({"attrgetter", "methodcaller", "itemgetter", "getitem"}),
    "functools": frozenset({"partial", "reduce"}),
    "types": frozenset({"FunctionType", "CodeType", "LambdaType", "MethodType", "ModuleType"}),
    "torch": frozenset({"load", "_load_global_deps"}),
    "numpy": frozenset({"load", "fromfile", "loadtxt"}),
    "copyreg": frozenset({"add_extension", "_slotnames"}),
}
_SAFE_EXACT = frozenset(
    {
        "collections.OrderedDict",
        "collections.defaultdict",
        "copyreg._reconstructor",
        "_codecs.encode",
        "torch._utils._rebuild_tensor",
        "torch._utils._rebuild_tensor_v2",
        "torch._utils._rebuild_tensor_v3",
        "torch._utils._rebuild_parameter",
        "torch._utils._rebuild_parameter_with_state",
        "torch._utils._rebuild_qtensor",
        "torch._utils._rebuild_sparse_tensor",
        "torch._utils._rebuild_meta_tensor_no_storage",
        "torch._utils._rebuild_device_tensor_from_numpy",
        "torch._utils._rebuild_wrapper_subclass",
        "torch._tensor._rebuild_from_type",
        "torch._tensor._rebuild_from_type_v2",
        "torch.Size",
        "torch.device",
        "torch.storage.UntypedStorage",
        "torch.storage.TypedStorage",
        "torch.serialization._get_layout",
        "torch.nn.parameter.Parameter",
        "torch.Tensor",
        "numpy.core.multiarray._reconstruct",
        "numpy._core.multiarray._reconstruct",
        "numpy.core.multiarray.scalar",
        "numpy._core.multiarray.scalar",
        "numpy.ndarray",
        "numpy.dtype",
        *(
            f"builtins.{n}"
            for n in (
                "set",
                "frozenset",
                "slice",
                "range",
                "complex",
                "bytearray",
                "bytes",
                "dict",
                "list",
                "tuple",
                "int",
                "float",
                "str",
                "bool",
            )
        ),
    }
)
_SAFE_PATTERN = re.compile(
    r"^(torch\.[A-Za-z0-9]*Storage|torch\.(float|double|half|bfloat16|float\d+|int\d+|uint\d+|bool|complex\d+|"
    r"qint\d+|quint\w+|float8_\w+|long|int|short|char|cfloat|cdouble)|numpy\.dtypes\.\w+DType)$"
)
_STRING_OPS = frozenset(
    {
        "SHORT_BINUNICODE",
        "BINUNICODE",
        "BINUNICODE8",
        "UNICODE",
        "STRING",
        "BINSTRING",
        "SHORT_BINSTRING",
    }
)
_MEMO_PUT = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
_MEMO_GET = frozenset({"GET", "BINGET", "LONG_BINGET"})
_CALLS = frozenset({"REDUCE", "BUILD", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX"})
_UNRESOLVED = "<unresolved STACK_GLOBAL>"


class _Malformed(Exception):
    """The bytes are not a complete, well-formed pickle stream."""


MalformedArchive = _Malformed
"""Raised by the zip readers below for a broken or oversized archive (public name for other scanners)."""


def is_pickle_path(path: str) -> bool:
    return path.lower().endswith(PICKLE_SUFFIXES)


def classify_global(module: str, name: str) -> str:
    """'dangerous', 'safe' or 'unknown' for an import `module.name`."""
    full = f"{module}.{name}"
    if full in _SAFE_EXACT or _SAFE_PATTERN.match(full):
        return "safe"
    parts = module.split(".")
    for i in range(len(parts), 0, -1):
        names = _DANGEROUS.get(".".join(parts[:i]))
        if names is None:
            continue
        if "*" in names or (i == len(parts) and name.split(".", maxsplit=1)[0] in names):
            return "dangerous"
    if module in ("builtins", "__builtin__") and name.startswith("_"):
        return "dangerous"
    return "unknown"


@dataclass
class PickleImports:
    """What the opcodes of one pickle stream would import and call."""

    imports: list[tuple[str, str, str]] = field(default_factory=list)  # (module, name, opcode)
    calls: int = 0
    pickles: int = 0
    complete: bool = True
    error: str = ""


def _string_value(op: str, arg: object) -> str | None:
    if op in _STRING_OPS:
        if isinstance(arg, bytes):
            return arg.decode("latin-1")
        return str(arg)
    return None


def _scan_one(stream: io.BytesIO, result: PickleImports) -> None:
    """Walk one pickle (up to its STOP) with genops; raises _Malformed when it is not complete."""
    memo: dict[object, str | None] = {}
    history: list[tuple[str, str | None]] = []  # (opcode, string value or memo value)
    stopped = False
    try:
        for opcode, arg, _pos in pickletools.genops(stream):
            op = opcode.name
            value = _string_value(op, arg)
            if op in _MEMO_GET:
                value = memo.get(arg)
            if op in _MEMO_PUT:
                memo[arg] = history[-1][1] if history else None
            elif op == "MEMOIZE":
                memo[len(memo)] = history[-1][1] if history else None
            if op in ("GLOBAL", "INST"):
                module, _, name = str(arg).partition(" ")
                result.imports.append((module, name, op))
            elif op == "STACK_GLOBAL":
                operands: list[str] = []
                for past_op, past_value in reversed(history):
                    if past_op in _MEMO_PUT or past_op == "MEMOIZE":
                        continue
                    if past_value is None or not (past_op in _STRING_OPS or past_op in _MEMO_GET):
                        break
                    operands.append(past_value)
                    if len(operands) == 2:
                        break
                if len(operands) == 2:
                    result.imports.append((operands[1], operands[0], op))
                else:
                    result.imports.append((_UNRESOLVED, "", op))
            if op in _CALLS:
                result.calls += 1
            history.append((op, value))
            if len(history) > 64:
                del history[:32]
            if op == "STOP":
                stopped = True
    except (ValueError, EOFError, struct.error, UnicodeDecodeError, OverflowError, KeyError) as exc:
        raise _Malformed(str(exc)[:200]) from exc
    if not stopped:
        raise _Malformed("pickle ended before its STOP opcode")
    result.pickles += 1


def scan_pickle_stream(data: bytes, *, truncated: bool, max_pickles: int = MAX_PICKLES_PER_FILE) -> PickleImports:
    """Imports of up to `max_pickles` consecutive pickles at the start of `data` (legacy torch layout).

    `truncated` says that `data` is only a prefix of the file: running out of bytes then means "not fully
    scanned" rather than "malformed".
    """
    result = PickleImports()
    stream = io.BytesIO(data)
    while result.pickles < max_pickles and stream.tell() < len(data):
        start = stream.tell()
        try:
            _scan_one(stream, result)
        except _Malformed as exc:
            if result.pickles == 0:
                result.complete = False
                result.error = "truncated by the byte budget" if truncated else str(exc)
            # After the first pickles of a legacy torch file come raw tensor bytes: stop there.
            stream.seek(start)
            break
    return result


# ------------------------------------------------------------------------------------------ torch zip files


@dataclass(frozen=True)
class ZipMember:
    name: str
    method: int
    compressed_size: int
    size: int
    local_offset: int


def _zip64_extra(extra: bytes, need: list[str]) -> dict[str, int]:
    values: dict[str, int] = {}
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, pos)
        body = extra[pos + 4 : pos + 4 + length]
        if tag == 0x0001:
            off = 0
            for key in need:
                if off + 8 <= len(body):
                    values[key] = struct.unpack_from("<Q", body, off)[0]
                    off += 8
        pos += 4 + length
    return values


def read_zip_directory(read: RangeReader, size: int, *, budget: int) -> list[ZipMember]:
    """The central directory of a zip file of `size` bytes, read by range. Raises _Malformed."""
    # The end record is the last 22 bytes unless the zip has a comment: try those first, then the longest tail.
    tail = read(size - min(size, 98), min(size, 98))
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + 22 > len(tail) or tail[at + 20 : at + 22] != b"\x00\x00":
        tail_len = min(size, 65_557)
        tail = read(size - tail_len, tail_len)
        at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + 22 > len(tail):
        raise _Malformed("no zip end-of-central-directory record")
    entries, cd_size, cd_offset = struct.unpack_from("<HII", tail, at + 10)
    if cd_offset == 0xFFFFFFFF or cd_size == 0xFFFFFFFF or entries == 0xFFFF:
        locator = tail.rfind(b"PK\x06\x07", 0, at)
        if locator < 0:
            raise _Malformed("zip64 locator missing")
        (eocd64_offset,) = struct.unpack_from("<Q", tail, locator + 8)
        if eocd64_offset + 56 > size:
            raise _Malformed("zip64 end record outside the file")
        record = read(eocd64_offset, 56)
        if record[:4] != b"PK\x06\x06":
            raise _Malformed("bad zip64 end record")
        entries, cd_size, cd_offset = struct.unpack_from("<QQQ", record, 32)
    if cd_size > budget or cd_offset + cd_size > size:
        raise _Malformed(f"central directory of {cd_size} bytes is outside the file or the byte budget")
    directory = read(cd_offset, cd_size)
    members: list[ZipMember] = []
    pos = 0
    while pos + 46 <= len(directory) and len(members) < 100_000:
        if directory[pos : pos + 4] != b"PK\x01\x02":
            raise _Malformed("bad central directory entry")
        method, _t, _d, _crc, csize, usize, nlen, elen, clen = struct.unpack_from("<HHHIIIHHH", directory, pos + 10)
        (local,) = struct.unpack_from("<I", directory, pos + 42)
        name = directory[pos + 46 : pos + 46 + nlen].decode("utf-8", "replace")
        extra = directory[pos + 46 + nlen : pos + 46 + nlen + elen]
        need = [k for k, v in (("usize", usize), ("csize", csize), ("local", local)) if v == 0xFFFFFFFF]
        if need:
            z64 = _zip64_extra(extra, need)
            usize, csize, local = z64.get("usize", usize), z64.get("csize", csize), z64.get("local", local)
        members.append(ZipMember(name, method, csize, usize, local))
        pos += 46 + nlen + elen + clen
    return members


def read_zip_member(read: RangeReader, member: ZipMember, size: int, *, budget: int) -> bytes:
    """One member's bytes (stored or deflated), bounded by `budget`. Raises _Malformed."""
    if member.compressed_size > budget or member.size > budget:
        raise _Malformed(f"{member.name} is {member.size} bytes, over the {budget}-byte budget")
    header = read(member.local_offset, 30)
    if header[:4] != ZIP_MAGIC:
        raise _Malformed("bad local file header")
    nlen, elen = struct.unpack_from("<HH", header, 26)
    start = member.local_offset + 30 + nlen + elen
    if start + member.compressed_size > size:
        raise _Malformed(f"{member.name} extends past the end of the file")
    raw = read(start, member.compressed_size)
    if member.method == 0:
        return raw
    if member.method == 8:
        inflater = zlib.decompressobj(-15)
        try:
            out = inflater.decompress(raw, budget + 1)
        except zlib.error as exc:
            raise _Malformed(f"{member.name}: bad deflate data ({exc})") from exc
        if len(out) > budget:
            raise _Malformed(f"{member.name} inflates past the byte budget")
        return out
    raise _Malformed(f"{member.name} uses zip compression method {member.method}")


# ------------------------------------------------------------------------------------------ findings


def _findings_for(path: str, result: PickleImports, where: str = "") -> list[Finding]:
    shown = display_path(path)
    label = f"{shown}{where}"
    found: list[Finding] = []
    dangerous = sorted(
        {f"{m}.{n} ({op})" for m, n, op in result.imports if m == _UNRESOLVED or classify_global(m, n) == "dangerous"}
    )
    unknown = sorted(
        {f"{m}.{n}" for m, n, _op in result.imports if m != _UNRESOLVED and classify_global(m, n) == "unknown"}
    )
    if dangerous:
        found.append(
            Finding(
                scanner=SCANNER,
                code=codes.PICKLE_DANGEROUS_IMPORT,
                severity=Severity.CRITICAL,
                message=f"{label} would import {', '.join(display_path(d) for d in dangerous[:8])} when "
                "unpickled "
                f"({result.calls} call opcodes): it can run arbitrary code",
                path=shown,
            )
        )
    if unknown:
        found.append(
            Finding(
                scanner=SCANNER,
                code=codes.PICKLE_UNKNOWN_IMPORT,
                severity=Severity.MEDIUM,
                message=f"{label} imports {', '.join(display_path(u) for u in unknown[:8])}, which are not "
                "known-safe "
                "tensor-rebuild functions: a maintainer must review them",
                path=shown,
            )
        )
    if not result.complete:
        code = codes.PICKLE_UNSCANNED if "budget" in result.error else codes.PICKLE_MALFORMED
        found.append(
            Finding(
                scanner=SCANNER,
                code=code,
                severity=Severity.MEDIUM,
                message=f"{label} could not be fully inspected ({display_path(result.error)}); it is never "
                "loaded, but a "
                "maintainer must review it",
                path=shown,
            )
        )
    return found


def scan_pickle_bytes(path: str, data: bytes, *, truncated: bool, where: str = "") -> list[Finding]:
    """Findings for one pickle embedded in another format (e.g. a numpy object array), `where` naming it."""
    return _findings_for(path, scan_pickle_stream(data, truncated=truncated, max_pickles=1), where)


def scan_pickle_file(path: str, size: int | None, read: RangeReader, *, budget: int = DEFAULT_BUDGET) -> list[Finding]:
    """Findings for one pickle-based file, read through `read(start, length)` within `budget` bytes."""
    shown = display_path(path)
    if size is None or size <= 0:
        size_known = False
        size = budget
    else:
        size_known = True
    magic = read(0, min(size, 4))
    if magic == ZIP_MAGIC and size_known:
        try:
            members = read_zip_directory(read, size, budget=budget)
            pickles = [m for m in members if m.name.endswith(".pkl")][:MAX_ZIP_MEMBERS]
            if not pickles:
                raise _Malformed("no *.pkl member in the zip (not a torch checkpoint)")
            found: list[Finding] = []
            for member in pickles:
                data = read_zip_member(read, member, size, budget=budget)
                found.extend(
                    _findings_for(
                        path,
                        scan_pickle_stream(data, truncated=False, max_pickles=1),
                        f" [{display_path(member.name)}]",
                    )
                )
            return found
        except _Malformed as exc:
            return [
                Finding(
                    scanner=SCANNER,
                    code=codes.PICKLE_MALFORMED,
                    severity=Severity.MEDIUM,
                    message=f"{shown} is a zip whose pickle could not be located "
                    f"({display_path(str(exc))}); it is never "
                    "loaded, but a maintainer must review it",
                    path=shown,
                )
            ]
    head = read(0, min(size, budget))
    truncated = len(head) < size or not size_known
    return _findings_for(path, scan_pickle_stream(head, truncated=truncated))
