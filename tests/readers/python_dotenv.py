"""Reads env files with the python-dotenv of the interpreter running it, interpolation on and off.

usage: python python_dotenv.py FILE...  prints {"version": V, "on": {file: result}, "off": {...}}
"""

import json
import sys
from importlib.metadata import version

from dotenv import dotenv_values


def read(path, interpolate):
    try:
        return {"values": dict(dotenv_values(path, interpolate=interpolate))}
    except Exception as exc:
        return {"error": type(exc).__name__}


files = sys.argv[1:]
out = {"version": version("python-dotenv")}
for mode, interpolate in (("on", True), ("off", False)):
    out[mode] = {f: read(f, interpolate) for f in files}
sys.stdout.write(json.dumps(out))
