#!/usr/bin/env python3
"""Regenerates the field tables of docs/SCHEMAS.md from schemas/*.avsc.

Usage: python3 schemas/schemas_md.py [docs/SCHEMAS.md]
Rewrites the text between the GENERATED markers in place (standard library
only; run it after editing a schema, then review the diff).
"""
import glob
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
BEGIN = "<!-- BEGIN GENERATED FIELDS (schemas/schemas_md.py) -->"
END = "<!-- END GENERATED FIELDS -->"
ORDER = ["Signal", "SpinResult", "NodeMetrics", "WorkerStatus", "DeadLetter"]


def cell(s):
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return s.replace("|", "\\|").replace("\n", " ")


def type_name(t, named):
    """A short readable type; records met inline are queued in `named`."""
    if isinstance(t, str):
        return t
    if isinstance(t, list):
        return " | ".join(type_name(b, named) for b in t)
    kind = t["type"]
    if kind == "record":
        named.append(t)
        return t["name"]
    if kind == "enum":
        return "%s (enum: %s)" % (t["name"], ", ".join(t["symbols"]))
    if kind == "array":
        return "array<%s>" % type_name(t["items"], named)
    if kind == "map":
        return "map<%s>" % type_name(t["values"], named)
    if kind == "fixed":
        return "%s (fixed %d)" % (t["name"], t["size"])
    if "logicalType" in t:
        return "%s (%s)" % (kind, t["logicalType"])
    return type_name(kind, named)


def record_md(rec, level):
    named = []
    out = ["%s %s" % ("#" * level, rec["name"]), "", cell(rec.get("doc", "")),
           "",
           "| field | type | meaning |", "|---|---|---|"]
    for f in rec["fields"]:
        ty = type_name(f["type"], named)
        if "default" in f:
            ty += " = `%s`" % json.dumps(f["default"])
        out.append("| `%s` | %s | %s |" % (f["name"], cell(ty),
                                          cell(f.get("doc", ""))))
    out.append("")
    for sub in named:
        out += record_md(sub, level + 1)
    return out


def generate():
    files = {os.path.basename(p)[:-5]: p
             for p in glob.glob(os.path.join(HERE, "*.avsc"))}
    names = [n for n in ORDER if n in files] + sorted(set(files) - set(ORDER))
    out = []
    for n in names:
        with open(files[n]) as f:
            out += record_md(json.load(f), 3)
    return "\n".join(out)


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        HERE, "..", "docs", "SCHEMAS.md")
    with open(path) as f:
        text = f.read()
    a, b = text.index(BEGIN) + len(BEGIN), text.index(END)
    with open(path, "w") as f:
        f.write(text[:a] + "\n" + generate() + "\n" + text[b:])


if __name__ == "__main__":
    main()
