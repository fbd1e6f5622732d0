"""Hostile requests, derived from the message descriptors (so a new method or field is covered
without code here): every leaf field of a valid request gets values chosen by its type and name
(extreme numbers, Timestamps and Durations, unknown enum values, empty / huge / NUL / invalid
UTF-8 strings, wrong resource names, deep filters, garbage page tokens, oversized repeated
fields and maps), Any payloads are unpacked and mutated inside, and serialized requests get
byte-level mutations. Everything draws from a seeded random.Random."""
from __future__ import annotations

import base64
import math
import uuid
from dataclasses import dataclass, field
from typing import Callable

from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import FieldDescriptor as FD

TIMESTAMP = "google.protobuf.Timestamp"
DURATION = "google.protobuf.Duration"
FIELD_MASK = "google.protobuf.FieldMask"
ANY = "google.protobuf.Any"

KB, MB = 1024, 1024 * 1024
YEAR_0, YEAR_1, YEAR_10000 = -62167219200, -62135596800, 253402300800

# (seconds, nanos, label). The first block is the deterministic signature set.
TIMESTAMPS = [
    (9_000_000_000_000_000_000, 0, "seconds=9e18"),
    (-9_000_000_000_000_000_000, 0, "seconds=-9e18"),
    (10**13, 0, "seconds=1e13"),
    (-10**13, 0, "seconds=-1e13"),
    (YEAR_0, 0, "year 0"),
    (YEAR_10000, 0, "year 10000"),
    (1_767_225_600, -1, "nanos=-1"),
    (1_767_225_600, 1_000_000_000, "nanos=1e9"),
]
TIMESTAMPS_MORE = [
    (2**63 - 1, 0, "seconds=int64 max"), (-2**63, 0, "seconds=int64 min"),
    (YEAR_1, 0, "0001-01-01"), (YEAR_1 - 1, 0, "one second before year 1"),
    (YEAR_10000 - 1, 999_999_999, "9999-12-31T23:59:59.999999999"), (0, 0, "epoch"), (-1, 0, "seconds=-1"),
    (0, 2**31 - 1, "nanos=int32 max"), (0, -2**31, "nanos=int32 min"), (9_200_000_000_000, 0, "seconds=9.2e12"),
]
DURATIONS = [
    (9_000_000_000_000_000_000, 0, "seconds=9e18"),
    (-9_000_000_000_000_000_000, 0, "seconds=-9e18"),
    (10**13, 0, "seconds=1e13"),
    (315_576_000_001, 0, "seconds=315576000001 (beyond 10,000 years)"),
    (-1, 0, "seconds=-1"),
    (0, 1, "1 ns"),
    (1, -1, "seconds=1 nanos=-1 (signs differ)"),
    (0, 1_000_000_000, "nanos=1e9"),
]
DURATIONS_MORE = [
    (2**63 - 1, 0, "seconds=int64 max"), (-2**63, 0, "seconds=int64 min"), (0, 0, "zero"),
    (-1, 1, "seconds=-1 nanos=1 (signs differ)"), (0, -1, "nanos=-1"), (0, 2**31 - 1, "nanos=int32 max"),
    (0, 1000, "1 us"), (0, 1_000_000, "1 ms"), (-10**13, 0, "seconds=-1e13"),
]
INT32 = [2**31 - 1, -2**31, -1, 0, 1, 1000, 1001, 10**6, 2**31 - 2]
INT64 = [2**63 - 1, -2**63, -1, 0, 2**53 + 1, 10**13, -10**13]
UINT32 = [0, 2**32 - 1]
UINT64 = [0, 2**64 - 1]
DOUBLES = [math.nan, math.inf, -math.inf, -1e308, 1e308, -0.0, 5e-324, -1.0, 2.0]
ENUMS = [999, -1, 2**31 - 1, -2**31]

# Text that does not compress (finds btree index limits: 2,704 bytes per row).
_text_rng = __import__("random").Random(7)
RANDOM_TEXT = "".join(_text_rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(10 * KB))
GENERIC_STRINGS = [
    ("empty", ""), ("space", " "), ("NUL", "\x00"), ("NUL inside", "a\x00b"), ("control chars", "\r\n\t\x1b\x7f"),
    ("RTL override", "\u202eabc"), ("BOM", "\ufeff"), ("emoji", "\U0001F4A5" * 3), ("U+FFFF", "\uffff"),
    ("U+10FFFF", "\U0010FFFF"), ("backslash", "\\"), ("quote", '"'), ("SQL", "'; DROP TABLE customers; --"),
    ("format", "%s%s%n%x"), ("path", "../../../../etc/passwd"), ("combining", "e\u0301" * 64), ("NaN", "NaN"),
    ("-1", "-1"), ("40 digits", "9" * 40), ("star", "*"), ("slash", "/"), ("64 chars", "x" * 64),
    ("16 KiB + 1", "x" * (16 * KB + 1)), ("100 KB", "x" * (100 * KB)), ("3 KB random text", RANDOM_TEXT[:3 * KB]),
    ("10 KB random text", RANDOM_TEXT),
]
ORDER_BY = [
    ("nonsense", "nonsense"), ("desc desc", "update_time desc desc"), ("upper DESC", "update_time DESC"),
    ("two keys", "create_time asc, name desc"), ("comma", ","), ("SQL", "name; DROP TABLE x"),
    ("NUL", "name\x00"), ("tab", "update_time\tdesc"), ("100 KB", "x" * (100 * KB)),
]
UUIDISH = [
    ("empty", ""), ("not a UUID", "not-a-uuid"), ("nil UUID", "00000000-0000-0000-0000-000000000000"),
    ("braces", "{7d9f1f8e-2b1c-4d7a-9a53-2f0f1f0d9c11}"), ("no hyphens", "7d9f1f8e2b1c4d7a9a532f0f1f0d9c11"),
    ("NUL suffix", "7d9f1f8e-2b1c-4d7a-9a53-2f0f1f0d9c11\x00"), ("100 KB", "x" * (100 * KB)),
]
ETAGS = [("garbage", "garbage"), ("weak", 'W/"1"'), ("star", "*"), ("100 KB", "x" * (100 * KB)),
         ("20 digits", "99999999999999999999")]
TIME_LITERALS = [
    "0000-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999Z", "10000-01-01T00:00:00Z",
    "99999999-12-31T00:00:00Z", "-0001-01-01T00:00:00Z", "2026-02-30T00:00:00Z", "2026-01-01T00:00:00+99:99",
    "292277026596-12-04T15:30:07Z",
]
# Invalid UTF-8 put in place of an 8-byte marker after serialization (the Python serializer
# refuses invalid UTF-8 in proto3 strings, so it is injected into the bytes).
MARKER = "ZqJxKwVy"
BAD_UTF8 = [
    ("0xFF bytes", b"\xff" * 8), ("overlong NUL", b"\xc0\x80" * 4), ("UTF-16 surrogate", b"\xed\xa0\x80abcde"),
    ("above U+10FFFF", b"\xf4\x90\x80\x80abcd"), ("truncated sequence", b"abcdefg\xe2"),
    ("lone continuation", b"\x80abcdefg"),
]
COLLECTIONS = ["customers", "reports", "cases", "incidents", "services", "agents", "emergingIssues"]

_pool = descriptor_pool.Default()


def message_class(full_name: str):
    return message_factory.GetMessageClass(_pool.FindMessageTypeByName(full_name))


def new_uuid(rng) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def short(v, limit: int = 60) -> str:
    """A short repr of a value for reports: long strings and lists are summarised."""
    if isinstance(v, (str, bytes)) and len(v) > limit:
        return f"<{len(v)} {'chars' if isinstance(v, str) else 'bytes'}: {v[:24]!r}...>"
    if isinstance(v, (list, tuple)) and len(v) > 3:
        return f"[{len(v)} x {short(v[0], 24)}]"
    r = repr(v)
    return r if len(r) <= limit else r[:limit] + "..."


# ---------------------------------------------------------------------------------------------
# Leaves of a message: paths to every scalar, well-known-type, repeated and map field.

@dataclass
class Leaf:
    steps: tuple          # ("field", FieldDescriptor, index) | ("any", message full name)
    kind: str             # scalar type name, TIMESTAMP, DURATION, FIELD_MASK, ANY, "message", "map"
    fd: object
    is_set: bool
    depth: int
    base: object = None   # the value in the valid request (scalars / repeated scalars)

    @property
    def repeated(self) -> bool:
        return is_rep(self.fd) and self.kind != "map"

    @property
    def name(self) -> str:
        return self.fd.name

    @property
    def path(self) -> str:
        out = ""
        for s in self.steps:
            if s[0] == "any":
                out += f"<{s[1].rsplit('.', 1)[-1]}>"
            else:
                out += ("." if out else "") + s[1].name
                if is_rep(s[1]) and s is not self.steps[-1] and not is_map(s[1]):
                    out += f"[{s[2]}]"
        return out


SCALAR_KIND = {
    FD.TYPE_INT32: "int32", FD.TYPE_SINT32: "int32", FD.TYPE_SFIXED32: "int32",
    FD.TYPE_INT64: "int64", FD.TYPE_SINT64: "int64", FD.TYPE_SFIXED64: "int64",
    FD.TYPE_UINT32: "uint32", FD.TYPE_FIXED32: "uint32", FD.TYPE_UINT64: "uint64", FD.TYPE_FIXED64: "uint64",
    FD.TYPE_DOUBLE: "double", FD.TYPE_FLOAT: "double", FD.TYPE_BOOL: "bool", FD.TYPE_ENUM: "enum",
    FD.TYPE_STRING: "string", FD.TYPE_BYTES: "bytes",
}


def is_rep(fd) -> bool:
    """Whether a field is repeated (protobuf 6+ has is_repeated; older versions only label)."""
    rep = getattr(fd, "is_repeated", None)
    return rep if rep is not None else fd.label == FD.LABEL_REPEATED


def is_map(fd) -> bool:
    return fd.type == FD.TYPE_MESSAGE and fd.message_type.GetOptions().map_entry


def _is_set(m, fd) -> bool:
    if is_rep(fd):
        return len(getattr(m, fd.name)) > 0
    if fd.type == FD.TYPE_MESSAGE:
        return m.HasField(fd.name)
    return getattr(m, fd.name) != fd.default_value


def _unpack(any_msg):
    """The message packed in an Any, when its type is known; else None."""
    name = any_msg.type_url.rsplit("/", 1)[-1]
    try:
        inner = message_class(name)()
    except KeyError:
        return None
    return inner if any_msg.Unpack(inner) else None


def leaves(msg, max_depth: int = 5) -> list[Leaf]:
    out: list[Leaf] = []

    def walk(m, steps, depth):
        for fd in m.DESCRIPTOR.fields:
            path = steps + (("field", fd, 0),)
            is_set = _is_set(m, fd)
            rep = is_rep(fd)
            if is_map(fd):
                out.append(Leaf(path, "map", fd, is_set, depth))
            elif fd.type != FD.TYPE_MESSAGE:
                base = list(getattr(m, fd.name)) if rep else getattr(m, fd.name)
                out.append(Leaf(path, SCALAR_KIND[fd.type], fd, is_set, depth, base))
            else:
                full = fd.message_type.full_name
                if full in (TIMESTAMP, DURATION, FIELD_MASK):
                    out.append(Leaf(path, full, fd, is_set, depth))
                    continue
                if rep:
                    out.append(Leaf(path, "message", fd, is_set, depth))
                if depth >= max_depth:
                    continue
                if rep:
                    items = getattr(m, fd.name)
                    child = items[0] if len(items) else message_class(full)()
                else:
                    child = getattr(m, fd.name)
                if full == ANY:
                    out.append(Leaf(path, ANY, fd, is_set, depth))
                    inner = _unpack(child) if is_set else None
                    if inner is not None:
                        walk(inner, path + (("any", inner.DESCRIPTOR.full_name),), depth + 1)
                    continue
                walk(child, path, depth + 1)

    walk(msg, (), 1)
    return out


def apply(m, steps, fn):
    """Runs fn(parent_message, field_descriptor) at the leaf; Any payloads on the way are
    unpacked, changed and packed again."""
    step = steps[0]
    if step[0] == "any":
        inner = message_class(step[1])()
        m.Unpack(inner)
        apply(inner, steps[1:], fn)
        prefix = m.type_url.rsplit("/", 1)[0] if "/" in m.type_url else "type.googleapis.com"
        m.Pack(inner, type_url_prefix=prefix)
        return
    _, fd, idx = step
    if len(steps) == 1:
        fn(m, fd)
        return
    if is_rep(fd):
        items = getattr(m, fd.name)
        while len(items) <= idx:
            items.add()
        child = items[idx]
    else:
        child = getattr(m, fd.name)
    apply(child, steps[1:], fn)


# ---------------------------------------------------------------------------------------------
# Setters: (label, fn(parent, fd)) pairs for one leaf.

def set_scalar(v):
    def fn(m, fd):
        if is_rep(fd):
            items = getattr(m, fd.name)
            del items[:]
            items.append(v)
        else:
            setattr(m, fd.name, v)
    return fn


def set_list(vs):
    def fn(m, fd):
        items = getattr(m, fd.name)
        del items[:]
        items.extend(vs)
    return fn


def set_time(seconds, nanos):
    def fn(m, fd):
        t = getattr(m, fd.name).add() if is_rep(fd) else getattr(m, fd.name)
        t.seconds = seconds
        t.nanos = nanos
    return fn


def set_mask(paths):
    def fn(m, fd):
        mask = getattr(m, fd.name)
        del mask.paths[:]
        mask.paths.extend(paths)
    return fn


def set_any(type_url, value):
    def fn(m, fd):
        a = getattr(m, fd.name).add() if is_rep(fd) else getattr(m, fd.name)
        a.type_url = type_url
        a.value = value
    return fn


def set_map(entries):
    def fn(m, fd):
        mp = getattr(m, fd.name)
        mp.clear()
        vfd = fd.message_type.fields_by_name["value"]
        for k, v in entries:
            if vfd.type == FD.TYPE_MESSAGE:
                mp[k]  # an empty message value
            else:
                mp[k] = v if vfd.type == FD.TYPE_STRING else vfd.default_value
    return fn


def set_copies(n, fresh_ids_rng=None):
    """n copies of the repeated message's first element (or of an empty one)."""
    def fn(m, fd):
        items = getattr(m, fd.name)
        first = message_class(fd.message_type.full_name)()
        if len(items):
            first.CopyFrom(items[0])
        del items[:]
        for _ in range(n):
            e = items.add()
            e.CopyFrom(first)
            if fresh_ids_rng is not None:
                for k in ("request_id", "event_id"):
                    if k in e.DESCRIPTOR.fields_by_name:
                        setattr(e, k, new_uuid(fresh_ids_rng))
    return fn


def clear(m, fd):
    m.ClearField(fd.name)


# ---------------------------------------------------------------------------------------------
# Hostile values per leaf.

class Context:
    """What the value choices may use: real resource names and page tokens from seeding."""

    def __init__(self, names: dict[str, str], tokens: dict[str, str]):
        self.names = names      # placeholder -> resource name
        self.tokens = tokens    # method key -> a valid next_page_token

    def real_name_not_in(self, collection: str) -> str | None:
        for v in sorted(self.names.values()):
            if "/" in v and not v.startswith(collection + "/"):
                return v
        return None


def filter_values(base: str) -> list:
    first = (base or 'name = "x"').split(" AND ")[0].strip()
    fname = first
    for i, ch in enumerate(first):
        if ch in "=:<>! ":
            fname = first[:i]
            break
    vals = [
        ("10,000 clauses", " AND ".join([first] * 10_000)),
        ("70,000 clauses (more than 65,535 SQL parameters)", " AND ".join([first] * 70_000)),
        ("1,000 nested parentheses", "(" * 1000 + first + ")" * 1000),
        ("100,000 open parentheses", "(" * 100_000),
        ("1,000 NOTs", "NOT " * 1000 + first),
        ("OR", f"{first} OR {first}"),
        ("unterminated string", f'{fname} = "abc'),
        ("trailing backslash", f'{fname} = "abc\\'),
        ("1 MB quoted value", f'{fname} = "' + "x" * MB + '"'),
        ("NUL in value", f'{fname} = "a\x00b"'),
        ("NUL bare", f"{fname} = \x00"),
        ("map key of 100 KB", "labels." + "k" * (100 * KB) + ' = "v"'),
        ("empty map key", 'labels. = "v"'),
        ("dangling AND", first + " AND"),
        ("leading AND", "AND " + first),
        ("operator only", "="),
        ("has on a scalar", f'{fname}:"x"'),
        ("ordering on text", f'{fname} < "x"'),
        ("unicode field", 'régión = "x"'),
        ("long dotted field", "a." * 50_000 + 'b = "x"'),
        ("100 KB word", "x" * (100 * KB)),
        ("4,000-char word", "u" * 4000),
        ("number 1e999", f"{fname} > 1e999"),
        ("number below int64", f"{fname} > -9223372036854775809"),
    ]
    for t in TIME_LITERALS:
        vals.append((f"create_time > {t}", f'create_time > "{t}"'))
        vals.append((f"update_time <= {t}", f'update_time <= "{t}"'))
    return vals


def token_values(ctx: Context, key: str) -> list:
    own = ctx.tokens.get(key, "")
    others = [t for k, t in sorted(ctx.tokens.items()) if k != key]
    b64 = lambda b: base64.urlsafe_b64encode(b).decode()
    vals = [("garbage", "garbage"), ("AAAA", "AAAA"), ("padding only", "===="), ("percent", "%%%"),
            ("NUL", "\x00"), ("base64 of 1 byte", b64(b"\x01")), ("base64 of 64 zero bytes", b64(bytes(64))),
            ("base64 of 1 KiB 0xFF", b64(b"\xff" * KB)), ("base64 JSON", b64(b'{"offset":-1,"keys":[]}')),
            ("100 KB", "A" * (100 * KB))]
    if own:
        flipped = own[:len(own) // 2] + ("B" if own[len(own) // 2] != "B" else "C") + own[len(own) // 2 + 1:]
        vals += [("valid token minus last char", own[:-1]), ("first half of a valid token", own[:len(own) // 2]),
                 ("valid token plus a char", own + "A"), ("valid token, one char changed", flipped),
                 ("valid token upper-cased", own.upper()), ("valid token twice", own + own)]
    if others:
        vals.append(("a valid token of another method", others[0]))
    return vals


def name_values(base: str, ctx: Context) -> list:
    coll, _, rest = base.partition("/")
    wrong = "reports" if coll != "reports" else "cases"
    vals = [
        ("collection only", coll + "/"), ("no collection", rest), ("extra segment", base + "/x"),
        ("trailing slash", base + "/"), (f"wrong collection {wrong}/", f"{wrong}/{rest}"),
        ("unknown id", coll + "/00000000-0000-0000-0000-000000000000"), ("64-char id", coll + "/" + "a" * 64),
        ("10 KB id", coll + "/" + "a" * (10 * KB)), ("upper-cased id", coll + "/" + rest.upper()),
        ("dot-dot", coll + "/.."), ("NUL suffix", base + "\x00"), ("leading space", " " + base),
        ("percent-encoded slash", coll + "%2F" + rest), ("unicode id", coll + "/ü-ß"),
    ]
    other = ctx.real_name_not_in(coll)
    if other:
        vals.append(("a real name of another type", other))
    return vals


def string_values(leaf: Leaf, ctx: Context, key: str, signature: bool) -> list:
    """(label, value) for a string leaf. `signature`: the short deterministic list."""
    name = leaf.name
    base = (leaf.base[0] if leaf.base else "") if leaf.repeated else (leaf.base or "")
    special = []
    if name == "filter":
        special = filter_values(base)
    elif name == "page_token":
        special = token_values(ctx, key)
    elif name == "order_by":
        special = ORDER_BY
    elif name in ("request_id", "event_id"):
        special = UUIDISH
    elif name == "etag":
        special = ETAGS
    names = name_values(base, ctx) if "/" in base.strip("/") else []
    if signature:
        generic = [("empty", ""), ("NUL", "\x00"), ("100 KB", "x" * (100 * KB)), ("3 KB random text", RANDOM_TEXT[:3 * KB])]
        return special + names[:8] + generic
    return special + names + GENERIC_STRINGS


def leaf_values(leaf: Leaf, ctx: Context, key: str, rng, signature: bool) -> list:
    """(label, setter) hostile values for one leaf."""
    k = leaf.kind
    out = []
    if k == TIMESTAMP:
        src = TIMESTAMPS if signature else TIMESTAMPS + TIMESTAMPS_MORE
        out = [(lab, set_time(s, n)) for s, n, lab in src]
    elif k == DURATION:
        src = DURATIONS if signature else DURATIONS + DURATIONS_MORE
        out = [(lab, set_time(s, n)) for s, n, lab in src]
    elif k == FIELD_MASK:
        masks = [("*", ["*"]), ("empty path", [""]), ("unknown path", ["no_such_field"]), ("name", ["name"]),
                 ("output-only", ["create_time"]), ("10,000 paths", ["display_name"] * 10_000),
                 ("deep path", ["a." * 50_000 + "b"]), ("star and field", ["*", "name"]),
                 ("index", ["contacts[0]"]), ("100 KB path", ["x" * (100 * KB)])]
        out = [(lab, set_mask(p)) for lab, p in masks]
    elif k == ANY:
        out = [("empty type_url", set_any("", b"\x08\x01")),
               ("unknown type", set_any("type.googleapis.com/liaison.nope.v1.Nothing", b"")),
               ("no slash", set_any("liaison.intake.v1.ReportAccepted", b"")),
               ("Timestamp packed", set_any("type.googleapis.com/google.protobuf.Timestamp", b"\x08\xff\x01")),
               ("garbage value", set_any("type.googleapis.com/liaison.intake.v1.ReportAccepted", b"\xff\xff\xff\xff")),
               ("1 MB value", set_any("type.googleapis.com/liaison.intake.v1.ReportAccepted", b"\x00" * MB))]
    elif k == "map":
        maps = [("10,000 entries", [(f"k{i}", "v") for i in range(10_000)]), ("empty key", [("", "")]),
                ("100 KB key", [("k" * (100 * KB), "v")]), ("100 KB value", [("k", "v" * (100 * KB))]),
                ("NUL key and value", [("\x00", "\x00")]), ("unicode key", [("ключ", "значение")])]
        out = [(lab, set_map(e)) for lab, e in maps]
    elif k == "message":
        out = [("no elements", set_copies(0)), ("2 copies", set_copies(2)), ("501 copies", set_copies(501)),
               ("1001 copies", set_copies(1001)), ("1001 copies, fresh ids", set_copies(1001, rng)),
               ("10,000 copies", set_copies(10_000))]
    elif k in ("int32", "int64", "uint32", "uint64"):
        vals = {"int32": INT32, "int64": INT64, "uint32": UINT32, "uint64": UINT64}[k]
        out = [(f"{v}", set_scalar(v)) for v in (vals[:3] if signature else vals)]
    elif k == "double":
        out = [(f"{v}", set_scalar(v)) for v in (DOUBLES[:4] if signature else DOUBLES)]
    elif k == "bool":
        out = [("flipped", set_scalar(not (leaf.base[0] if leaf.repeated and leaf.base else leaf.base)))]
    elif k == "enum":
        top = max(v.number for v in leaf.fd.enum_type.values)
        vals = [top + 1, -1] if signature else [top + 1] + ENUMS
        out = [(f"unknown value {v}", set_scalar(v)) for v in vals]
    elif k == "string":
        out = [(lab, set_scalar(v)) for lab, v in string_values(leaf, ctx, key, signature)]
    elif k == "bytes":
        out = [("empty", set_scalar(b"")), ("1 MB", set_scalar(b"\xff" * MB))]
    if leaf.repeated and k not in ("message", TIMESTAMP, DURATION, ANY):
        item = (leaf.base[0] if leaf.base else None)
        if item is None:
            item = {"string": "x", "bytes": b"x", "bool": True, "double": 1.0}.get(k, 1)
        out += [("10,000 elements", set_list([item] * 10_000)), ("duplicate element", set_list([item, item])),
                ("1001 elements", set_list([item] * 1001))]
        if k == "string":
            out += [("empty element", set_list(["", ""]))]
    if not signature and leaf.is_set:
        out.append(("cleared", clear))
    return out


# ---------------------------------------------------------------------------------------------
# Byte-level mutations of serialized requests.

def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def tag(field_number: int, wire_type: int) -> bytes:
    return varint((field_number << 3) | wire_type)


BYTE_SIGNATURES = [
    ("1,000 nested unknown groups", lambda d: d + tag(1999, 3) * 1000 + tag(1999, 4) * 1000),
    ("100,000 nested unknown groups", lambda d: d + tag(1999, 3) * 100_000 + tag(1999, 4) * 100_000),
    ("unterminated group", lambda d: d + tag(1999, 3)),
    ("end-group without start", lambda d: d + tag(1999, 4)),
    ("wire type 6", lambda d: d + tag(1999, 6) + b"\x00"),
    ("wire type 7", lambda d: d + tag(5, 7) + b"\x00"),
    ("truncated varint", lambda d: d + tag(1999, 0) + b"\xff"),
    ("11-byte varint", lambda d: d + tag(1999, 0) + b"\xff" * 10 + b"\x01"),
    ("length 4 GiB", lambda d: d + tag(1, 2) + varint(2**32 - 1) + b"abc"),
    ("length 2^64-1", lambda d: d + tag(1, 2) + b"\xff" * 9 + b"\x01" + b"abc"),
    ("length beyond the end", lambda d: d + tag(1, 2) + varint(100) + b"abc"),
    ("field number 0", lambda d: d + b"\x00\x01"),
    ("field number 2^29-1", lambda d: d + tag(2**29 - 1, 0) + b"\x01"),
    ("truncated by one byte", lambda d: d[:-1]),
    ("1 MB of unknown field", lambda d: d + tag(1999, 2) + varint(MB) + b"\x00" * MB),
    ("5 MB (over the 4 MiB limit)", lambda d: d + tag(1999, 2) + varint(5 * MB) + b"\x00" * (5 * MB)),
]


def mutate_bytes(rng, data: bytes, other: bytes | None = None) -> tuple[bytes, str]:
    """One to four random byte-level mutations; returns the bytes and a description."""
    d = bytearray(data)
    done = []
    for _ in range(rng.choice([1, 1, 2, 3, 4])):
        op = rng.choice(["flip", "set", "delete", "insert", "dup", "truncate", "unknown", "length",
                         "overlong", "splice"])
        n = len(d)
        if op == "flip" and n:
            i = rng.randrange(n)
            b = rng.randrange(8)
            d[i] ^= 1 << b
            done.append(f"flip bit {b} of byte {i}")
        elif op == "set" and n:
            i = rng.randrange(n)
            d[i] = rng.choice([0x00, 0xFF, 0x7F, 0x80, rng.randrange(256)])
            done.append(f"byte {i}=0x{d[i]:02x}")
        elif op == "delete" and n:
            i = rng.randrange(n)
            j = min(n, i + rng.randint(1, 16))
            del d[i:j]
            done.append(f"delete [{i}:{j}]")
        elif op == "insert":
            i = rng.randint(0, n)
            ins = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
            d[i:i] = ins
            done.append(f"insert {ins.hex()} at {i}")
        elif op == "dup" and n:
            i = rng.randrange(n)
            j = min(n, i + rng.randint(1, 64))
            k = rng.randint(0, n)
            d[k:k] = d[i:j]
            done.append(f"copy [{i}:{j}] to {k}")
        elif op == "truncate" and n:
            i = rng.randrange(n)
            del d[i:]
            done.append(f"truncate at {i}")
        elif op == "unknown":
            fn = rng.choice([15, 99, 1000, 2**29 - 1, rng.randrange(1, 2**29)])
            wt = rng.randrange(8)
            d += tag(fn, wt) + bytes(rng.randrange(256) for _ in range(rng.randint(0, 12)))
            done.append(f"append field {fn} wire type {wt}")
        elif op == "length":
            fn = rng.randint(1, 12)
            ln = rng.choice([2**31, 2**32 - 1, 2**63, 2**64 - 1, n + 1])
            d += tag(fn, 2) + varint(ln) + b"xyz"
            done.append(f"append field {fn} length {ln}")
        elif op == "overlong":
            fn = rng.randint(1, 12)
            d += tag(fn, 0) + b"\xff" * rng.randint(9, 12) + b"\x01"
            done.append(f"append overlong varint field {fn}")
        elif op == "splice" and other:
            i = rng.randint(0, n)
            j = rng.randint(0, len(other))
            d = d[:i] + bytearray(other[j:])
            done.append(f"splice at {i} with another request from {j}")
    return bytes(d), "; ".join(done) or "unchanged"


@dataclass
class Case:
    """One hostile call. `build` makes the request bytes lazily; `first`, if set, is sent
    before it (the original call of a request_id reused with another payload)."""
    kind: str
    label: str
    build: Callable[[], bytes]
    first: Callable[[], bytes] | None = None
    index: int = 0
    extras: dict = field(default_factory=dict)
