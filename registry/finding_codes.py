"""Every finding code the scanners emit: the machine-readable vocabulary of screening decisions.

Defined once, here at the bottom layer beside the `Finding` record, so the scanners that emit them and the
sample repositories that must show them (devstack/samples/expectations.py) name the same constants. The
default disposition of each code (what verdict it leads to) lives in `scanners.policy`; a code's severity is
set by the scanner that emits it. Codes are stable (`<area>.<problem>`): reports, the catalog and the tests
match on them.
"""

from __future__ import annotations

# ------------------------------------------------------------------ licences (scanners.licenses)
LICENSE_ALLOWED = "license.allowed"
LICENSE_REVIEW = "license.needs-review"
LICENSE_DENIED = "license.denied"
LICENSE_UNKNOWN = "license.unknown"
LICENSE_MISSING = "license.missing"
LICENSE_MISMATCH = "license.mismatch"
LICENSE_SPOOFING = "license.spoofing"
LICENSE_FILE_UNIDENTIFIED = "license.file-unidentified"

# ------------------------------------------------------------------ custom code (scanners.remote_code)
REMOTE_CODE_AUTO_MAP = "remote-code.auto-map"
REMOTE_CODE_CROSS_REPO = "remote-code.cross-repo"
REMOTE_CODE_PYTHON_FILE = "remote-code.python-file"
REMOTE_CODE_HANDLER = "remote-code.handler"
REMOTE_CODE_CARD_HINT = "remote-code.card-hint"
REMOTE_CODE_ALLOWED = "remote-code.allowed"

# ------------------------------------------------------------------ weight formats (scanners.formats)
WEIGHTS_MISSING = "format.missing-weights"
WEIGHTS_NO_SAFETENSORS = "format.no-safetensors"
FORMAT_PICKLE = "format.pickle"
FORMAT_GGUF = "format.gguf"
FORMAT_ONNX = "format.onnx"
FORMAT_OTHER = "format.other"
# A numpy array of Python objects (.npy / an .npz member): its data is a pickle (scanners.numpy_arrays).
FORMAT_NUMPY_OBJECT = "format.numpy-object"

# ------------------------------------------------------------------ pickles (scanners.pickles)
PICKLE_DANGEROUS_IMPORT = "pickle.dangerous-import"
PICKLE_UNKNOWN_IMPORT = "pickle.unknown-import"
PICKLE_MALFORMED = "pickle.malformed"
PICKLE_UNSCANNED = "pickle.unscanned"

# ----------------------------------------------------------------- safetensors (scanners.safetensors_headers)
ST_HEADER_TOO_LARGE = "safetensors.header-too-large"
ST_HEADER_BEYOND_FILE = "safetensors.header-beyond-file"
ST_HEADER_TRUNCATED = "safetensors.header-truncated"
ST_HEADER_INVALID = "safetensors.header-invalid"
ST_UNKNOWN_DTYPE = "safetensors.unknown-dtype"
ST_SHAPE_MISMATCH = "safetensors.shape-mismatch"
ST_OFFSET_OUT_OF_RANGE = "safetensors.offset-out-of-range"
ST_OVERLAP = "safetensors.overlap"
ST_GAP = "safetensors.gap"
ST_METADATA_INVALID = "safetensors.metadata-invalid"
ST_PARAMETER_MISMATCH = "safetensors.parameter-mismatch"
ST_INDEX_INVALID = "safetensors.index-invalid"
ST_INDEX_MISMATCH = "safetensors.index-mismatch"

# ------------------------------------------------------------------ secrets (scanners.secrets)
SECRET_FOUND = "secret.found"  # noqa: S105 (a finding code, not a secret)

# ------------------------------------------------------------------ paths (scanners.paths)
PATH_TRAVERSAL = "path.traversal"
PATH_ABSOLUTE = "path.absolute"
PATH_CONTROL_CHARS = "path.control-chars"
PATH_BACKSLASH = "path.backslash"
PATH_UNICODE = "path.unicode"
PATH_TOO_LONG = "path.too-long"

# ------------------------------------------------------------------ access (scanners.access)
NEEDS_TOKEN = "access.needs-token"  # noqa: S105 (a finding code, not a secret)
REPO_DISABLED = "access.disabled"
REPO_NOT_FOUND = "access.not-found"

# ----------------------------------------------------------------- the screening run itself (scanners.screen)
FILE_UNREADABLE = "screen.file-unreadable"
FILE_TOO_LARGE = "screen.file-too-large"
