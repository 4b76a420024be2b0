"""Check FIX messages against QuickFIX's FIX 4.4 data dictionary, as a QuickFIX initiator
with `UseDataDictionary=Y` checks what it receives.

    dictionary = FixDictionary.load()
    assert dictionary.problems(raw_bytes) == []

What it checks (QuickFIX's DataDictionary::validate rules, with the defaults
ValidateFieldsOutOfOrder=Y, ValidateFieldsHaveValues=Y, ValidateUserDefinedFields=Y):
every tag is defined; every tag belongs to the header, the trailer or this message type
(components and repeating groups flattened); the header's and the message's required fields
are present (a required component's required fields too); no tag appears twice outside a
group; header fields come first; values are not empty, match the field's type (INT, SEQNUM,
LENGTH, NUMINGROUP: digits; PRICE, QTY, AMT, FLOAT...: a plain decimal; CHAR one character;
BOOLEAN Y/N; UTCTIMESTAMP `YYYYMMDD-HH:MM:SS[.sss]`) and, for enumerated fields, are one of
the listed values (each word of a MULTIPLEVALUESTRING).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from gateway.fix.client import FixClient
from gateway.fix.codec import FixMessage, FixStreamParser

DICTIONARY_PATH = Path(__file__).parent / "fix" / "FIX44.xml"

_DIGITS = re.compile(r"-?\d+")
_DECIMAL = re.compile(r"-?(\d+(\.\d*)?|\.\d+)")
_TIMESTAMP = re.compile(r"\d{8}-\d{2}:\d{2}:\d{2}(\.\d{3})?")
_INT_TYPES = {"INT", "SEQNUM", "LENGTH", "NUMINGROUP"}
_DECIMAL_TYPES = {"PRICE", "QTY", "AMT", "FLOAT", "PERCENTAGE", "PRICEOFFSET"}
# Framing fields the codec itself checks.
_FRAMING = {8, 9, 10}


@dataclass
class _FieldDef:
    number: int
    name: str
    type: str
    values: frozenset[str]


@dataclass
class _MessageDef:
    name: str
    allowed: set[int] = field(default_factory=set)
    required: set[int] = field(default_factory=set)
    group_members: set[int] = field(default_factory=set)


class FixDictionary:
    def __init__(self, root: ET.Element) -> None:
        self.fields: dict[int, _FieldDef] = {}
        self._by_name: dict[str, int] = {}
        for f in root.iter("field"):
            if f.get("number") is None:
                continue
            number = int(f.get("number", "0"))
            values = frozenset(v.get("enum", "") for v in f.findall("value"))
            self.fields[number] = _FieldDef(number, f.get("name", ""), f.get("type", ""),
                                            values)
            self._by_name[f.get("name", "")] = number
        fields_root = root.find("fields")
        assert fields_root is not None
        self._components = {c.get("name", ""): c for c in root.iter("component")
                            if c.find("*") is not None}
        header = root.find("header")
        trailer = root.find("trailer")
        assert header is not None and trailer is not None
        self.header = self._collect(header, "header")
        self.trailer = self._collect(trailer, "trailer")
        self.messages: dict[str, _MessageDef] = {}
        messages = root.find("messages")
        assert messages is not None
        for m in messages.findall("message"):
            self.messages[m.get("msgtype", "")] = self._collect(m, m.get("name", ""))

    @classmethod
    def load(cls, path: Path = DICTIONARY_PATH) -> FixDictionary:
        return cls(ET.parse(path).getroot())

    def _collect(self, node: ET.Element, name: str) -> _MessageDef:
        out = _MessageDef(name)
        self._walk(node, out, required_here=True, in_group=False)
        return out

    def _walk(self, node: ET.Element, out: _MessageDef, *, required_here: bool,
              in_group: bool) -> None:
        for child in node:
            required = required_here and child.get("required") == "Y"
            name = child.get("name", "")
            if child.tag == "field":
                number = self._by_name[name]
                out.allowed.add(number)
                if required and not in_group:
                    out.required.add(number)
                if in_group:
                    out.group_members.add(number)
            elif child.tag == "group":
                number = self._by_name[name]
                out.allowed.add(number)
                if required and not in_group:
                    out.required.add(number)
                self._walk(child, out, required_here=False, in_group=True)
            elif child.tag == "component":
                self._walk(self._components[name], out, required_here=required,
                           in_group=in_group)

    def problems(self, data: bytes | FixMessage) -> list[str]:
        """What a QuickFIX initiator would reject in this message (empty: nothing)."""
        if isinstance(data, FixMessage):
            message = data
        else:
            parsed = list(FixStreamParser().feed(data))
            if len(parsed) != 1:
                return [f"{len(parsed)} messages parsed, expected 1"]
            message = parsed[0]
        msg_type = message.msg_type
        spec = self.messages.get(msg_type)
        if spec is None:
            return [f"MsgType {msg_type!r} is not defined"]
        out: list[str] = []
        seen: set[int] = set()
        in_body = False
        for tag, value in message.fields:
            if tag in _FRAMING:
                continue
            where = f"{spec.name} tag {tag}"
            definition = self.fields.get(tag)
            if definition is None:
                out.append(f"{where}: tag not defined")
                continue
            in_header = tag in self.header.allowed
            if in_header and in_body and tag != 35:
                out.append(f"{where}: header field after body fields")
            if not in_header and tag not in self.trailer.allowed:
                in_body = True
                if tag not in spec.allowed:
                    out.append(f"{where} ({definition.name}): not defined for this message")
            if tag in seen and tag not in spec.group_members:
                out.append(f"{where}: appears more than once")
            seen.add(tag)
            out.extend(f"{where} ({definition.name}): {p}" for p in _value_problems(
                definition, value))
        for tag in sorted((self.header.required | spec.required) - seen - _FRAMING):
            out.append(f"{spec.name}: required tag {tag} ({self.fields[tag].name}) missing")
        return out


def _value_problems(definition: _FieldDef, value: str) -> list[str]:
    if value == "":
        return ["no value"]
    kind = definition.type
    if kind in _INT_TYPES and not _DIGITS.fullmatch(value):
        return [f"{value!r} is not an integer"]
    if kind in _DECIMAL_TYPES and not _DECIMAL.fullmatch(value):
        return [f"{value!r} is not a decimal"]
    if kind == "CHAR" and len(value) != 1:
        return [f"{value!r} is not one character"]
    if kind == "BOOLEAN" and value not in ("Y", "N"):
        return [f"{value!r} is not Y or N"]
    if kind == "UTCTIMESTAMP" and not _TIMESTAMP.fullmatch(value):
        return [f"{value!r} is not a UTCTimestamp"]
    if definition.values:
        words = value.split(" ") if kind == "MULTIPLEVALUESTRING" else [value]
        bad = [w for w in words if w not in definition.values]
        if bad:
            return [f"{value!r} is not one of the listed values"]
    return []


_DICTIONARY: FixDictionary | None = None


def dictionary() -> FixDictionary:
    """The dictionary, parsed once per test process."""
    global _DICTIONARY
    if _DICTIONARY is None:
        _DICTIONARY = FixDictionary.load()
    return _DICTIONARY


class CheckedFixClient(FixClient):
    """The test initiator, failing on any received message QuickFIX's dictionary rejects."""

    async def receive(self, wait_s: float = 5.0) -> FixMessage | None:
        message = await super().receive(wait_s)
        if message is not None:
            problems = dictionary().problems(message)
            if problems:
                raise AssertionError(f"invalid {message.msg_type}: {problems}: "
                                     f"{message.fields}")
        return message
